/* Where CPython keeps what kiln reads of it: the runtime's interpreters, a
 * thread's state and its chain of interpreter frames, a code object's names
 * and location table. Shared by the recorder (which reads another process
 * with process_vm_readv) and the heap shim (which reads its own process).
 *
 *   _PyRuntime.interpreters.head ─► PyInterpreterState.threads.head
 *        ─► PyThreadState (next, native_thread_id, cframe│current_frame)
 *        ─► _PyInterpreterFrame (code, previous, instr, owner) ─► previous …
 *
 * 3.10 keeps the same chain of thread states, but a thread is known by its
 * pthread_t (thread_id: the address of its struct pthread, whose tid the
 * reader finds at the C library's offset) and its frames are PyFrameObjects
 * (f_code, f_back, f_lasti), one evaluation-loop call each.
 *
 * A new CPython version is a new table here, not new code. From 3.13 the
 * interpreter publishes these offsets itself (_Py_DebugOffsets at the start
 * of _PyRuntime, cookie "xdebugpy"); kiln reads them there and keeps the
 * table only as the check of what it read. The version comes from the
 * binary's own Py_Version (PY_VERSION_HEX; before 3.11, which has none, its
 * cache tag "cpython-3NN", the string sys.implementation.cache_tag is made
 * of), never from a guess; an interpreter with no table gets native frames
 * and a notice. The 3.10-3.13 values were read from the interpreters' own
 * DWARF (ptype /o of each struct) and agree with
 * Include/internal/pycore_frame.h (3.10: Include/cpython/frameobject.h). */
#ifndef KILN_PYTHON_H
#define KILN_PYTHON_H

#include <stdint.h>
#include <string.h>

#define KILN_PY_NONE 0xffffu

struct kiln_py_offsets {
	uint32_t version; /* major << 8 | minor, e.g. 0x30b for 3.11 */
	/* the runtime and its interpreters */
	uint16_t rt_interp_head, is_next, is_threads_head;
	uint16_t rt_finalizing;    /* non-zero once Py_FinalizeEx tears modules down */
	uint16_t rt_preinit;       /* int preinitialized: the allocators are set up */
	/* PyThreadState */
	uint16_t ts_next, ts_native_tid; /* native_thread_id (3.11+; else KILN_PY_NONE) */
	uint16_t ts_thread_id;     /* 3.10: thread_id, the thread's pthread_t (its struct
				    * pthread, whose tid the reader knows the offset of) */
	uint16_t ts_cframe;        /* 3.11/3.12: a _PyCFrame *, whose current_frame is cf_current */
	uint16_t cf_current;
	uint16_t ts_current_frame; /* 3.13: the frame itself */
	/* _PyInterpreterFrame */
	uint16_t fr_code, fr_previous, fr_instr, fr_owner, fr_is_entry, fr_size;
	uint8_t instr_is_prev;     /* 3.11/3.12 prev_instr (last executed); 3.13 instr_ptr */
	uint8_t owner_cstack;      /* the owner value of an entry frame on the C stack, 0xff none */
	uint8_t frame_object;      /* 3.10: the chain is of PyFrameObjects (previous: f_back), each
				    * the frame of its own evaluation-loop call; fr_instr is f_lasti,
				    * an int: the last instruction's index (-1 before the first) */
	/* PyCodeObject */
	uint16_t co_filename, co_name, co_qualname, co_linetable, co_firstlineno, co_code, co_size;
	/* str and bytes */
	uint16_t str_length, str_state, str_ascii_size, str_compact_size;
	uint16_t bytes_size, bytes_sval;
	/* asyncio (collect/pyasync.c): a frame's globals, value stack and locals */
	uint16_t fr_globals, fr_stacktop, fr_localsplus;
	/* a coroutine: its embedded frame, its state, and the state of one
	 * suspended in an await (the awaited object on its stack's top).
	 * 3.10 (frame_object): gen_iframe is where the coroutine points at its
	 * PyFrameObject (cr_frame), gen_state the frame's f_state, fr_stacktop
	 * its f_stackdepth and fr_valuestack its f_valuestack */
	uint16_t gen_iframe, gen_state;
	int8_t gen_awaiting;
	uint16_t fr_valuestack;
	/* type objects, instance attributes (managed dicts), dicts, sets, ints */
	uint16_t tp_basicsize, tp_flags, tp_members, ht_cached_keys;
	uint16_t tp_dictoffset;    /* 3.10: where an instance keeps its __dict__ */
	uint8_t attrs_kind;        /* 1: 3.11 values at obj-32, 2: 3.12 tagged at obj-24, 3: 3.13 inline values,
				    * 4: 3.10 the instance's __dict__ (tp_dictoffset), 3.10's dict layout */
	uint16_t long_size_tag;    /* 3.11 ob_size, 3.12+ lv_tag (ndigits << 3) */
	uint8_t long_tagged;
	/* _asyncio's TaskObj */
	uint16_t task_loop, task_state, task_coro, task_name;
	/* the GIL (struct _gil_runtime_state: last_holder +8, locked +16):
	 * 3.11 inside _PyRuntime at gil_rt; 3.12+ a pointer at gil_interp in
	 * the interpreter state */
	uint16_t gil_rt, gil_interp;
};

static const struct kiln_py_offsets kiln_py_tables[] = {
	{.version = 0x30a, .rt_finalizing = 16, .rt_preinit = 4, .rt_interp_head = 32, .is_next = 0, .is_threads_head = 8,
	 .ts_next = 8, .ts_native_tid = KILN_PY_NONE, .ts_thread_id = 176, .ts_cframe = KILN_PY_NONE, .cf_current = 0,
	 .ts_current_frame = 24,
	 .fr_code = 32, .fr_previous = 24, .fr_instr = 96, .fr_owner = 108, .fr_is_entry = KILN_PY_NONE, .fr_size = 112,
	 .instr_is_prev = 1, .owner_cstack = 0xff, .frame_object = 1,
	 .co_filename = 104, .co_name = 112, .co_qualname = 112 /* no co_qualname before 3.11: the name */,
	 .co_linetable = 120, .co_firstlineno = 40, .co_code = 48, .co_size = 176,
	 .str_length = 16, .str_state = 32, .str_ascii_size = 48, .str_compact_size = 72,
	 .bytes_size = 16, .bytes_sval = 32,
	 .fr_globals = 48, .fr_stacktop = 80, .fr_valuestack = 64, .fr_localsplus = 352, .gen_iframe = 16,
	 .gen_state = 108, .gen_awaiting = -1 /* FRAME_SUSPENDED */, .tp_basicsize = 32, .tp_flags = 168,
	 .tp_members = 240, .ht_cached_keys = KILN_PY_NONE, .tp_dictoffset = 288, .attrs_kind = 4,
	 .long_size_tag = 16, .long_tagged = 0, .task_loop = 16, .task_state = 88, .task_coro = 160, .task_name = 168,
	 .gil_rt = 352, .gil_interp = KILN_PY_NONE},
	{.version = 0x30b, .rt_finalizing = 24, .rt_preinit = 8, .rt_interp_head = 40, .is_next = 0, .is_threads_head = 16,
	 .ts_next = 8, .ts_native_tid = 160, .ts_cframe = 56, .cf_current = 8, .ts_current_frame = KILN_PY_NONE,
	 .fr_code = 32, .fr_previous = 48, .fr_instr = 56, .fr_owner = 69, .fr_is_entry = 68, .fr_size = 72,
	 .instr_is_prev = 1, .owner_cstack = 0xff,
	 .co_filename = 112, .co_name = 120, .co_qualname = 128, .co_linetable = 136, .co_firstlineno = 72,
	 .co_code = 184, .co_size = 184,
	 .str_length = 16, .str_state = 32, .str_ascii_size = 48, .str_compact_size = 72,
	 .bytes_size = 16, .bytes_sval = 32,
	 .fr_globals = 8, .fr_stacktop = 64, .fr_localsplus = 72, .gen_iframe = 80, .gen_state = 75, .gen_awaiting = -1,
	 .tp_basicsize = 32, .tp_flags = 168, .tp_members = 240, .ht_cached_keys = 872, .attrs_kind = 1,
	 .long_size_tag = 16, .long_tagged = 0, .task_loop = 16, .task_state = 88, .task_coro = 136, .task_name = 144,
	 .gil_rt = 360, .gil_interp = KILN_PY_NONE},
	{.version = 0x30c, .rt_finalizing = 24, .rt_preinit = 8, .rt_interp_head = 40, .is_next = 0, .is_threads_head = 72,
	 .ts_next = 8, .ts_native_tid = 144, .ts_cframe = 56, .cf_current = 0, .ts_current_frame = KILN_PY_NONE,
	 .fr_code = 0, .fr_previous = 8, .fr_instr = 56, .fr_owner = 70, .fr_is_entry = KILN_PY_NONE, .fr_size = 72,
	 .instr_is_prev = 1, .owner_cstack = 3,
	 .co_filename = 112, .co_name = 120, .co_qualname = 128, .co_linetable = 136, .co_firstlineno = 68,
	 .co_code = 192, .co_size = 192,
	 .str_length = 16, .str_state = 32, .str_ascii_size = 40, .str_compact_size = 56,
	 .bytes_size = 16, .bytes_sval = 32,
	 .fr_globals = 24, .fr_stacktop = 64, .fr_localsplus = 72, .gen_iframe = 72, .gen_state = 67, .gen_awaiting = -1,
	 .tp_basicsize = 32, .tp_flags = 168, .tp_members = 240, .ht_cached_keys = 880, .attrs_kind = 2,
	 .long_size_tag = 16, .long_tagged = 1, .task_loop = 16, .task_state = 88, .task_coro = 136, .task_name = 144,
	 .gil_rt = KILN_PY_NONE, .gil_interp = 384},
	{.version = 0x30d, .rt_finalizing = 608, .rt_preinit = 592, .rt_interp_head = 632, .is_next = 7264, .is_threads_head = 7344,
	 .ts_next = 8, .ts_native_tid = 160, .ts_cframe = KILN_PY_NONE, .cf_current = 0, .ts_current_frame = 72,
	 .fr_code = 0, .fr_previous = 8, .fr_instr = 56, .fr_owner = 70, .fr_is_entry = KILN_PY_NONE, .fr_size = 72,
	 .instr_is_prev = 0, .owner_cstack = 3,
	 .co_filename = 112, .co_name = 120, .co_qualname = 128, .co_linetable = 136, .co_firstlineno = 68,
	 .co_code = 200, .co_size = 200,
	 .str_length = 16, .str_state = 32, .str_ascii_size = 40, .str_compact_size = 56,
	 .bytes_size = 16, .bytes_sval = 32,
	 .fr_globals = 24, .fr_stacktop = 64, .fr_localsplus = 72, .gen_iframe = 72, .gen_state = 67, .gen_awaiting = -1,
	 .tp_basicsize = 32, .tp_flags = 168, .tp_members = 240, .ht_cached_keys = 880, .attrs_kind = 3,
	 .long_size_tag = 16, .long_tagged = 1, .task_loop = 16, .task_state = 96, .task_coro = 120, .task_name = 128,
	 .gil_rt = KILN_PY_NONE, .gil_interp = 16},
};

/* The table for a PY_VERSION_HEX, or NULL: a version kiln does not know. */
static inline const struct kiln_py_offsets *kiln_py_table(uint32_t hexversion)
{
	uint32_t v = hexversion >> 16;
	for (size_t i = 0; i < sizeof(kiln_py_tables) / sizeof(kiln_py_tables[0]); i++)
		if (kiln_py_tables[i].version == v)
			return &kiln_py_tables[i];
	return NULL;
}

/* Before 3.11 (no Py_Version): the version its cache tag names, the
 * literal "cpython-3NN" sys.implementation.cache_tag is made of, found as a
 * string of its own (NUL before and after) in [lo, end): an image's
 * read-only data. PY_VERSION_HEX's major and minor, or 0. */
static inline uint32_t kiln_py_cache_tag(const unsigned char *lo, const unsigned char *end)
{
	static const char tag[] = "cpython-3";
	for (const unsigned char *p = lo; p < end;) {
		const unsigned char *q = (const unsigned char *)memmem(p, (size_t)(end - p), tag, sizeof(tag) - 1);
		if (!q)
			return 0;
		const unsigned char *d = q + sizeof(tag) - 1;
		unsigned minor = 0, nd = 0;
		for (; d < end && *d >= '0' && *d <= '9' && nd < 3; d++, nd++)
			minor = minor * 10 + (unsigned)(*d - '0');
		if (q > lo && q[-1] == 0 && nd && d < end && *d == 0 && minor < 256)
			return 3u << 24 | minor << 16;
		p = q + 1;
	}
	return 0;
}

/* _Py_DebugOffsets (3.13): where the fields kiln reads sit in it. */
#define KILN_PY_DBG_COOKIE "xdebugpy"
#define KILN_PY_DBG_SIZE 584

static inline uint16_t kiln_py_dbg_u16(const unsigned char *d, unsigned off, int *bad)
{
	uint64_t v;
	memcpy(&v, d + off, 8);
	if (v > 0xfff0u)
		*bad = 1;
	return (uint16_t)v;
}

/* The largest structure headers kiln copies to read fields from: every
 * offset into them must fall inside (offsets may come from the target's
 * own memory, _Py_DebugOffsets: a program posing as CPython names any). */
#define KILN_PY_FRAME_MAX 128
#define KILN_PY_CODE_MAX 256
#define KILN_PY_STR_MAX 96

static inline int kiln_py_field_in(unsigned off, unsigned width, unsigned size)
{
	return off + width <= size;
}

/* 1 when every offset o holds into a structure kiln copies is inside it. */
static inline int kiln_py_offsets_valid(const struct kiln_py_offsets *o)
{
	unsigned fs = o->fr_size, cs = o->co_size, ss = o->str_compact_size;
	if (fs < 16 || fs > KILN_PY_FRAME_MAX || cs > KILN_PY_CODE_MAX || cs < 16 || ss > KILN_PY_STR_MAX ||
	    (unsigned)o->str_ascii_size + 16 > 0xffff)
		return 0;
	return kiln_py_field_in(o->fr_code, 8, fs) && kiln_py_field_in(o->fr_previous, 8, fs) &&
	       kiln_py_field_in(o->fr_instr, 8, fs) && kiln_py_field_in(o->fr_owner, 1, fs) &&
	       (o->fr_is_entry == KILN_PY_NONE || kiln_py_field_in(o->fr_is_entry, 1, fs)) &&
	       kiln_py_field_in(o->co_filename, 8, cs) && kiln_py_field_in(o->co_name, 8, cs) &&
	       kiln_py_field_in(o->co_qualname, 8, cs) && kiln_py_field_in(o->co_linetable, 8, cs) &&
	       kiln_py_field_in(o->co_firstlineno, 4, cs) && kiln_py_field_in(o->str_length, 8, ss) &&
	       kiln_py_field_in(o->str_state, 4, ss) && o->str_ascii_size <= ss && o->str_compact_size <= ss;
}

/* Fill o from the interpreter's own _Py_DebugOffsets (d: its first
 * KILN_PY_DBG_SIZE bytes), starting from the table t for its version.
 * 0, or -1 when d is not a 3.13 debug-offsets block or names an offset no
 * struct of its kind could have. */
static inline int kiln_py_from_debug(const unsigned char *d, const struct kiln_py_offsets *t,
				     struct kiln_py_offsets *o)
{
	uint64_t ver;
	int bad = 0;
	memcpy(&ver, d + 8, 8);
	if (memcmp(d, KILN_PY_DBG_COOKIE, 8) || (ver >> 16) != 0x30d || !t)
		return -1;
	*o = *t;
	o->rt_finalizing = kiln_py_dbg_u16(d, 32, &bad);
	o->rt_interp_head = kiln_py_dbg_u16(d, 40, &bad);
	o->is_next = kiln_py_dbg_u16(d, 64, &bad);
	o->is_threads_head = kiln_py_dbg_u16(d, 72, &bad);
	o->ts_next = kiln_py_dbg_u16(d, 168, &bad);
	o->ts_current_frame = kiln_py_dbg_u16(d, 184, &bad);
	o->ts_native_tid = kiln_py_dbg_u16(d, 200, &bad);
	o->fr_previous = kiln_py_dbg_u16(d, 232, &bad);
	o->fr_code = kiln_py_dbg_u16(d, 240, &bad);
	o->fr_instr = kiln_py_dbg_u16(d, 248, &bad);
	o->fr_owner = kiln_py_dbg_u16(d, 264, &bad);
	o->co_filename = kiln_py_dbg_u16(d, 280, &bad);
	o->co_name = kiln_py_dbg_u16(d, 288, &bad);
	o->co_qualname = kiln_py_dbg_u16(d, 296, &bad);
	o->co_linetable = kiln_py_dbg_u16(d, 304, &bad);
	o->co_firstlineno = kiln_py_dbg_u16(d, 312, &bad);
	o->co_code = kiln_py_dbg_u16(d, 344, &bad);
	o->bytes_size = kiln_py_dbg_u16(d, 520, &bad);
	o->bytes_sval = kiln_py_dbg_u16(d, 528, &bad);
	o->str_state = kiln_py_dbg_u16(d, 544, &bad);
	o->str_length = kiln_py_dbg_u16(d, 552, &bad);
	o->str_ascii_size = kiln_py_dbg_u16(d, 560, &bad);
	o->str_compact_size = (uint16_t)(o->str_ascii_size + 16);
	if (bad || (uint32_t)o->str_ascii_size + 16 > KILN_PY_STR_MAX || o->co_code < o->co_linetable)
		return -1;
	o->co_size = o->co_code;
	return kiln_py_offsets_valid(o) ? 0 : -1;
}

/* One interpreter frame, decoded from its bytes fr (fr_size of them: the
 * shim reads its own thread's frames in place, the recorder a copy). */
struct kiln_py_frame {
	uint64_t code, previous;
	uint32_t lasti; /* the instruction index (code units), 0 when unknown */
	uint8_t cstack; /* 3.12+: the entry frame of one evaluation-loop call, owned by the
			 * C stack: it runs no code; the frames before it are that call's */
	uint8_t entry;  /* 3.11: this frame is the first of its evaluation-loop call */
};

/* A frame from its fields: code object, previous frame, instruction
 * pointer, owner byte and (3.11) is_entry byte. */
static inline void kiln_py_frame_of(uint64_t code, uint64_t previous, uint64_t instr, uint8_t owner, uint8_t is_entry,
				    const struct kiln_py_offsets *o, struct kiln_py_frame *f)
{
	f->code = code;
	f->previous = previous;
	if (o->frame_object) {
		int32_t lasti = (int32_t)(uint32_t)instr;
		f->cstack = 0;
		f->entry = 1;
		f->lasti = lasti > 0 ? (uint32_t)lasti : 0;
		return;
	}
	f->cstack = o->owner_cstack != 0xff && owner == o->owner_cstack;
	f->entry = o->fr_is_entry != KILN_PY_NONE && is_entry;
	uint64_t start = f->code + o->co_code, lasti = instr >= start ? (instr - start) / 2 : 0;
	f->lasti = lasti < (1u << 28) ? (uint32_t)lasti : 0;
}

static inline void kiln_py_frame_read(const unsigned char *fr, const struct kiln_py_offsets *o,
				      struct kiln_py_frame *f)
{
	uint64_t code, previous, instr;
	memcpy(&code, fr + o->fr_code, 8);
	memcpy(&previous, fr + o->fr_previous, 8);
	memcpy(&instr, fr + o->fr_instr, 8);
	kiln_py_frame_of(code, previous, instr, fr[o->fr_owner],
			 o->fr_is_entry != KILN_PY_NONE ? fr[o->fr_is_entry] : 0, o, f);
}

/* Where a str's characters are, from its state word: the offset of its data
 * (and *kind, 1, 2 or 4 bytes a character), or 0 for a string kiln does not
 * read (not compact, or of another kind). */
static inline unsigned kiln_py_str_data(uint32_t state, const struct kiln_py_offsets *o, unsigned *kind)
{
	unsigned k = (state >> 2) & 7, compact = (state >> 5) & 1, ascii = (state >> 6) & 1;
	if (!compact || (k != 1 && k != 2 && k != 4))
		return 0;
	*kind = k;
	return ascii ? o->str_ascii_size : o->str_compact_size;
}

/* Python frames in a heap stack (the shim's STACK record, ring.h): a frame
 * is two words, KILN_PY_TAG | flags | code object address, then the code
 * object's co_firstlineno << 32 | the instruction index in code units (the
 * recorder reads the object later: a different first line means it is no
 * longer the same object). KILN_PY_ENTRY marks the last frame of
 * one _PyEval_EvalFrameDefault call (the merge point, see collect/python.h). */
#define KILN_PY_TAG 0xff00000000000000ull
#define KILN_PY_TAG_MASK 0xff00000000000000ull
#define KILN_PY_ENTRY (1ull << 55)
#define KILN_PY_ADDR_MASK ((1ull << 48) - 1)

#endif
