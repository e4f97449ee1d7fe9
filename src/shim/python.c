/* The shim's CPython (include/kiln/python.h): found at set-up, its
 * frames read at each new stack (a few loads a frame, no call), code
 * objects' names sent once per thread so the recorder can name a frame
 * whose object is gone, the finalization point, and the allocator domains
 * wrapped for --trace-python-allocators. */
#include <link.h>
#include <stdlib.h>
#include <sys/mman.h>
#include "shim/shim_int.h"

/* CPython in this process (include/kiln/python.h): its evaluation loop's
 * text, where the thread's state is found, and the offsets to read */
bool g_py;
uintptr_t g_eval_lo, g_eval_hi;
static void *(*g_py_tstate)(void);
struct kiln_py_offsets g_pyo;
const char *g_py_rt;    /* _PyRuntime */
int g_py_fin_sent;      /* RING_PYFIN written in this image */

/* ---- Python's allocator domains (KILN_PYDOMAINS=1) ----
 * pymalloc serves small objects from arenas it maps itself: malloc never
 * sees them. As memray's --trace-python-allocators and tracemalloc do, the
 * MEM and OBJ domains are wrapped (PyMem_SetAllocator) once CPython has set
 * them up (_PyRuntime.preinitialized: before that a PYTHONMALLOC setting
 * would replace the wrappers), by the thread that initializes it. Each
 * wrapper forwards first, under the recursion guard (a large object's
 * PyMem_RawMalloc underneath is not counted again), and records second;
 * a free is recorded before it is forwarded. A block allocated through
 * malloc before the wrap and freed through a wrapper is one block either
 * way: events are keyed by address. */
typedef struct {
	void *ctx;
	void *(*malloc)(void *ctx, size_t size);
	void *(*calloc)(void *ctx, size_t nelem, size_t elsize);
	void *(*realloc)(void *ctx, void *ptr, size_t new_size);
	void (*free)(void *ctx, void *ptr);
} py_allocator;
enum { PYD_RAW, PYD_MEM, PYD_OBJ };
static py_allocator g_pyd_old[3];
static void (*g_py_getalloc)(int domain, py_allocator *a);
static void (*g_py_setalloc)(int domain, py_allocator *a);
bool g_pyd_want;   /* asked for */
int g_pyd_state;   /* 0 not yet, 1 wrapped, -1 never (no API) */

void python_domains_wrap(void);

/* Before 3.11 (no Py_Version): the cache tag "cpython-3NN", a string of
 * its own in the read-only data of the object that holds _PyRuntime, says
 * which CPython it is (collect/python.c reads the file the same way). Read
 * in place, nothing called. */
struct tag_find {
	uintptr_t at;
	uint32_t hex;
};

static int tag_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	struct tag_find *tf = arg;
	bool ours = false;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
		if (ph->p_type == PT_LOAD && tf->at >= lo && tf->at - lo < ph->p_memsz)
			ours = true;
	}
	if (!ours)
		return 0;
	for (int i = 0; i < info->dlpi_phnum && !tf->hex; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD || (ph->p_flags & PF_W) || !(ph->p_flags & PF_R))
			continue;
		const unsigned char *lo = (const unsigned char *)(info->dlpi_addr + ph->p_vaddr);
		tf->hex = kiln_py_cache_tag(lo, lo + ph->p_filesz);
	}
	return 1;
}

/* Is this a CPython kiln reads? Its symbols are looked up once, at start
 * (the interpreter or libpython is loaded by then); a Python embedded later
 * by dlopen is not read, and its stacks stay native. */
void python_init(void)
{
	const unsigned long *ver = dlsym(RTLD_DEFAULT, "Py_Version");
	void *ev = dlsym(RTLD_DEFAULT, "_PyEval_EvalFrameDefault");
	void *gt = dlsym(RTLD_DEFAULT, "PyGILState_GetThisThreadState");
	const unsigned char *rt = dlsym(RTLD_DEFAULT, "_PyRuntime");
	if (!ev || !gt || !rt)
		return;
	struct tag_find tf = {(uintptr_t)rt, 0};
	if (!ver)
		dl_iterate_phdr(tag_cb, &tf);
	const struct kiln_py_offsets *t = kiln_py_table(ver ? (uint32_t)*ver : tf.hex);
	if (!t)
		return;
	g_pyo = *t;
	if (t->version >= 0x30d && kiln_py_from_debug(rt, t, &g_pyo) < 0)
		return;
	Dl_info info;
	const ElfW(Sym) *sym = NULL;
	if (!dladdr1(ev, &info, (void **)&sym, RTLD_DL_SYMENT) || !sym || !sym->st_size)
		return;
	g_py_rt = (const char *)rt;
	g_eval_lo = (uintptr_t)ev;
	g_eval_hi = g_eval_lo + sym->st_size;
	g_py_tstate = (void *(*)(void))gt;
	g_py = true;
	const char *dom = getenv("KILN_PYDOMAINS");
	if (dom && *dom == '1' && !g_attached) {
		/* a running Python (attach) keeps its allocators: wrapping them
		 * while other threads allocate through them would race */
		g_py_getalloc = (void (*)(int, py_allocator *))dlsym(RTLD_DEFAULT, "PyMem_GetAllocator");
		g_py_setalloc = (void (*)(int, py_allocator *))dlsym(RTLD_DEFAULT, "PyMem_SetAllocator");
		g_pyd_want = true;
	}
}

/* This thread's Python frames, innermost first, as ring.h's two words each
 * (code object | flags, instruction index): a few loads a frame, no call
 * but the one that finds the thread's state (no allocation, no lock). The
 * thread itself is the only writer of its frame chain, and it is here. */
int python_frames(uint64_t *w, int max, bool *truncated)
{
	char *ts = g_py_tstate();
	if (!ts)
		return 0;
	const struct kiln_py_offsets *o = &g_pyo;
	uintptr_t f;
	if (o->ts_current_frame != KILN_PY_NONE) {
		f = *(uintptr_t *)(ts + o->ts_current_frame);
	} else {
		uintptr_t cf = *(uintptr_t *)(ts + o->ts_cframe);
		if (!cf)
			return 0;
		f = *(uintptr_t *)(cf + o->cf_current);
	}
	int n = 0;
	for (int steps = 0; f && steps < 4096; steps++) {
		if (n == max) {
			*truncated = true;
			return n;
		}
		struct kiln_py_frame d;
		kiln_py_frame_read((const unsigned char *)f, o, &d);
		if (d.cstack) { /* the frames before it are one loop call's */
			if (n && !(w[2 * (n - 1)] & KILN_PY_ENTRY)) {
				w[2 * (n - 1)] |= KILN_PY_ENTRY;
			} else {
				w[2 * n] = KILN_PY_TAG | KILN_PY_ENTRY;
				w[2 * n + 1] = 0;
				n++;
			}
		} else {
			w[2 * n] = KILN_PY_TAG | (d.entry ? KILN_PY_ENTRY : 0) | (d.code & KILN_PY_ADDR_MASK);
			/* the code object's first line rides along: the recorder,
			 * reading the object later, checks it is still the same */
			uint32_t first = (uint32_t)*(const int32_t *)(d.code + o->co_firstlineno);
			w[2 * n + 1] = (uint64_t)first << 32 | d.lasti;
			n++;
		}
		f = d.previous;
	}
	if (n)
		w[2 * (n - 1)] |= KILN_PY_ENTRY;
	return n;
}

/* ---- Python code objects' names, sent once per thread (ring.h PYCODE) ---- */

/* Whether this thread sent code's names already in this image; marks it sent. */
bool pycode_sent(struct tstate *t, uint64_t code)
{
	if (!t->pycodes) {
		void *m = mmap(NULL, sizeof(uint64_t) * PYCODE_SET, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			       -1, 0);
		if (m == MAP_FAILED)
			return true; /* the recorder reads the object itself */
		t->pycodes = m;
		t->pycode_gen = g_image_gen;
	}
	if (t->pycode_gen != g_image_gen) {
		memset(t->pycodes, 0, sizeof(uint64_t) * PYCODE_SET);
		t->pycode_gen = g_image_gen;
	}
	size_t j = (size_t)((code >> 4) * 0x9e3779b97f4a7c15ULL >> 52) & (PYCODE_SET - 1);
	for (int probe = 0; probe < 32; probe++, j = (j + 1) & (PYCODE_SET - 1)) {
		if (t->pycodes[j] == code)
			return true;
		if (!t->pycodes[j]) {
			t->pycodes[j] = code;
			return false;
		}
	}
	return false; /* the set is crowded: send it again rather than not at all */
}

struct pystr {
	const unsigned char *data;
	uint32_t len;
	uint8_t kind;
};

/* A compact str's characters as CPython holds them (no copy, no conversion). */
static bool py_str(uintptr_t obj, struct pystr *s, uint32_t max)
{
	if (!obj)
		return false;
	const char *o = (const char *)obj;
	int64_t len = *(const int64_t *)(o + g_pyo.str_length);
	unsigned kind = 0, at = kiln_py_str_data(*(const uint32_t *)(o + g_pyo.str_state), &g_pyo, &kind);
	if (len < 0 || !at)
		return false;
	s->data = (const unsigned char *)o + at;
	s->len = len > max ? max : (uint32_t)len;
	s->kind = (uint8_t)kind;
	return true;
}

/* Append n bytes to the words written after a PYCODE's four-word head. */
static void put_bytes(struct tstate *t, uint64_t *word, uint64_t *i, const unsigned char *p, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		*word |= (uint64_t)p[k] << (8 * (*i % 8));
		if (++*i % 8 == 0) {
			ring_put(t, 4 + *i / 8 - 1, *word);
			*word = 0;
		}
	}
}

/* Send code's qualified name, file and location table, raw (the recorder
 * decodes them): what it needs to name the frame if the object is freed
 * before it reads it. Nothing is formatted or parsed here. */
void pycode_define(struct tstate *t, uintptr_t code)
{
	const struct kiln_py_offsets *o = &g_pyo;
	const char *co = (const char *)code;
	struct pystr q = {0}, f = {0};
	if (!py_str(*(const uintptr_t *)(co + o->co_qualname), &q, KILN_PYCODE_QUAL_MAX) &&
	    !py_str(*(const uintptr_t *)(co + o->co_name), &q, KILN_PYCODE_QUAL_MAX))
		return;
	if (!py_str(*(const uintptr_t *)(co + o->co_filename), &f, KILN_PYCODE_FILE_MAX))
		f = (struct pystr){NULL, 0, 1};
	uintptr_t lt = *(const uintptr_t *)(co + o->co_linetable);
	int64_t tlen = lt ? *(const int64_t *)(lt + o->bytes_size) : 0;
	if (tlen < 0 || tlen > KILN_PYCODE_TABLE_MAX)
		tlen = 0;
	uint64_t bytes = (uint64_t)q.len * q.kind + (uint64_t)f.len * f.kind + (uint64_t)tlen;
	uint64_t words = 4 + (bytes + 7) / 8;
	if (words > (t->mask + 1) / 4 && tlen) { /* a small ring: names only */
		bytes -= (uint64_t)tlen;
		tlen = 0;
		words = 4 + (bytes + 7) / 8;
	}
	if (words > (t->mask + 1) / 4 || !ring_reserve(t, words))
		return; /* the recorder reads the object itself */
	uint32_t first = (uint32_t)*(const int32_t *)(co + o->co_firstlineno);
	ring_put(t, 0, words << 8 | RING_PYCODE);
	ring_put(t, 1, (uint64_t)code);
	ring_put(t, 2, (uint64_t)first << 32 | (uint64_t)q.kind << 8 | f.kind);
	ring_put(t, 3, (uint64_t)q.len | (uint64_t)f.len << 16 | (uint64_t)tlen << 32);
	uint64_t word = 0, i = 0;
	put_bytes(t, &word, &i, q.data, (size_t)q.len * q.kind);
	if (f.len)
		put_bytes(t, &word, &i, f.data, (size_t)f.len * f.kind);
	if (tlen)
		put_bytes(t, &word, &i, (const unsigned char *)lt + o->bytes_sval, (size_t)tlen);
	if (i % 8)
		ring_put(t, 4 + i / 8, word);
	ring_publish(t, words);
}

/* CPython tears its modules down from here on: say so once, before this
 * event, so what was live is the program's leaks and the clean-up is not. */
__attribute__((noinline)) void python_finalizing(struct tstate *t)
{
	int expected = 0;
	if (!__atomic_compare_exchange_n(&g_py_fin_sent, &expected, 1, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return;
	if (!ring_reserve(t, 2))
		return;
	uint64_t seq = seq_begin(t);
	ring_put(t, 0, seq << 8 | RING_PYFIN);
	ring_put(t, 1, 0);
	ring_publish(t, 2);
	seq_end(t);
	/* The recorder names Python frames by reading their code objects,
	 * which finalization is about to free: wait (at most 2 s) until it has
	 * read everything before this event, every STACK included. */
	uint64_t start = mono_ns();
	for (unsigned spins = 1; __atomic_load_n(&t->hdr->tail, __ATOMIC_ACQUIRE) < t->head; spins++) {
		struct timespec ts = {0, spins < 64 ? 50000 : 500000};
		nanosleep(&ts, NULL);
		if (mono_ns() - start > 2000000000ull || (spins % 64 == 0 && !recorder_alive()))
			break;
	}
}

static void *pyd_malloc(void *ctx, size_t n)
{
	const py_allocator *o = &g_pyd_old[(uintptr_t)ctx];
	t_guard++;
	void *p = o->malloc(o->ctx, n);
	t_guard--;
	RECORD_ALLOC(p, n);
	return p;
}

static void *pyd_calloc(void *ctx, size_t n, size_t m)
{
	const py_allocator *o = &g_pyd_old[(uintptr_t)ctx];
	t_guard++;
	void *p = o->calloc(o->ctx, n, m);
	t_guard--;
	RECORD_ALLOC(p, n * m);
	return p;
}

static void *pyd_realloc_fwd(void *ctx, void *old, size_t n)
{
	const py_allocator *o = &g_pyd_old[(uintptr_t)ctx];
	return o->realloc(o->ctx, old, n);
}

static void *pyd_realloc(void *ctx, void *old, size_t n)
{
	if (!recording()) {
		t_guard++;
		void *p = pyd_realloc_fwd(ctx, old, n);
		t_guard--;
		return p;
	}
	CALLER(ws);
	if (!old) {
		t_guard++;
		void *p = pyd_realloc_fwd(ctx, NULL, n);
		t_guard--;
		if (p && shim_sample__take(p, n))
			record(NULL, p, n, &ws);
		return p;
	}
	return realloc_recorded(old, n, &ws, pyd_realloc_fwd, ctx);
}

static void pyd_free(void *ctx, void *p)
{
	const py_allocator *o = &g_pyd_old[(uintptr_t)ctx];
	if (p && recording() && shim_sample__free(p))
		record(p, NULL, 0, NULL);
	t_guard++;
	o->free(o->ctx, p);
	t_guard--;
}

/* Wrap the MEM and OBJ domains, once CPython's allocators are set up. */
__attribute__((noinline)) void python_domains_wrap(void)
{
	if (!g_py_getalloc || !g_py_setalloc) {
		g_pyd_state = -1;
		return;
	}
	for (int d = PYD_MEM; d <= PYD_OBJ; d++) {
		g_py_getalloc(d, &g_pyd_old[d]);
		py_allocator ours = {(void *)(uintptr_t)d, pyd_malloc, pyd_calloc, pyd_realloc, pyd_free};
		g_py_setalloc(d, &ours);
	}
	__atomic_store_n(&g_pyd_state, 1, __ATOMIC_RELEASE);
}
