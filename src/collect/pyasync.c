/* asyncio tasks of a CPython process (see pyasync.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "collect/pyasync.h"
#include "kiln/python.h"
#include "util/util.h"

#define MAX_SET (1u << 16)    /* entries of a task set read */
#define MAX_DICT (1u << 14)   /* entries of a dict searched */
#define MAX_MEMBERS 64

struct pyasync {
	struct pyproc *pp;
	const struct kiln_py_offsets *o;
	/* what was found once and is checked again at each use */
	uint64_t handle_type, cb_off;
	uint64_t task_type, step_type, method_type, coro_type, futiter_type, gather_type;
	uint64_t handle_run_code, run_once_code; /* Handle._run's and _run_once's code objects */
	uint64_t globals, tasks_dict, ws, ws_set, eager_set;
	unsigned char *table; /* a set's entries, read at once */
};

struct pyasync *pyasync__new(struct pyproc *pp)
{
	struct pyasync *a = xcalloc(1, sizeof(*a));
	a->pp = pp;
	a->o = pyproc__offsets(pp);
	a->table = xmalloc((size_t)MAX_SET * 16);
	return a;
}

void pyasync__free(struct pyasync *a)
{
	if (!a)
		return;
	free(a->table);
	free(a);
}

static bool r64(struct pyasync *a, uint64_t addr, uint64_t *v)
{
	*v = 0;
	return pyproc__read(a->pp, addr, v, 8);
}

static uint64_t type_of(struct pyasync *a, uint64_t obj)
{
	uint64_t t;
	return obj && r64(a, obj + 8, &t) ? t : 0;
}

/* Whether obj's type is named name (or, with bases, derives from one that
 * is); *cache keeps the type once it was. */
static bool is_a(struct pyasync *a, uint64_t obj, const char *name, uint64_t *cache, int bases)
{
	uint64_t t = type_of(a, obj);
	if (!t)
		return false;
	if (cache && *cache && *cache == t)
		return true;
	for (int i = 0; t && i <= bases; i++) {
		char n[64];
		uint64_t tn;
		if (!r64(a, t + 24, &tn) || !pyproc__read(a->pp, tn, n, sizeof(n)) || !memchr(n, 0, sizeof(n)))
			return false;
		if (!strcmp(n, name)) {
			if (cache && i == 0)
				*cache = type_of(a, obj);
			return true;
		}
		if (!r64(a, t + 256, &t)) /* tp_base */
			return false;
	}
	return false;
}

/* Frame i's function is qual in a file ending in file. */
static bool frame_is(struct pyasync *a, const struct pyframe *f, const char *qual, const char *file)
{
	const char *fn, *fl;
	uint32_t line, def;
	if (!f->code || f->label || !f->addr || !pyproc__name(a->pp, f, &fn, &fl, &line, &def))
		return false;
	const char *dot = strrchr(qual, '.');
	if (a->o->frame_object && dot)
		qual = dot + 1; /* 3.10: no co_qualname, the method's name alone */
	size_t lf = strlen(fl), n = strlen(file);
	return !strcmp(fn, qual) && lf >= n && !strcmp(fl + lf - n, file);
}

/* A str object equal to s. */
static bool str_is(struct pyasync *a, uint64_t obj, const char *s)
{
	char *t = pyproc__str(a->pp, obj);
	bool eq = t && !strcmp(t, s);
	free(t);
	return eq;
}

/* 3.10's keys: dk_size (a power of two) at 8, dk_nentries at 32, then
 * dk_size indices of 1, 2, 4 or 8 bytes, then the entries (hash, key,
 * value); a split table's values are ma_values[i]. */
static uint64_t dict_get_310(struct pyasync *a, uint64_t keys, uint64_t values, const char *name)
{
	int64_t size, n;
	if (!pyproc__read(a->pp, keys + 8, &size, 8) || !pyproc__read(a->pp, keys + 32, &n, 8) || size <= 0 ||
	    (size & (size - 1)) || size > (1ll << 40) || n < 0 || n > MAX_DICT || n > size)
		return 0;
	uint64_t width = size <= 0xff ? 1 : size <= 0xffff ? 2 : size <= 0xffffffffll ? 4 : 8;
	uint64_t ents = keys + 40 + (uint64_t)size * width;
	for (int64_t i = 0; i < n; i++) {
		uint64_t k, v;
		if (!r64(a, ents + 24 * (uint64_t)i + 8, &k) || !k || !str_is(a, k, name))
			continue;
		if (values)
			return r64(a, values + 8 * (uint64_t)i, &v) ? v : 0;
		return r64(a, ents + 24 * (uint64_t)i + 16, &v) ? v : 0;
	}
	return 0;
}

/* dict[name] for a dict with str keys (module globals, an instance's
 * dict); 0 when absent or unreadable. */
static uint64_t dict_get(struct pyasync *a, uint64_t dict, const char *name)
{
	uint64_t keys, values;
	if (!r64(a, dict + 32, &keys) || !r64(a, dict + 40, &values) || !keys)
		return 0;
	if (a->o->attrs_kind == 4)
		return dict_get_310(a, keys, values, name);
	unsigned char h[32];
	if (!pyproc__read(a->pp, keys, h, sizeof(h)))
		return 0;
	uint8_t log2_index = h[9], kind = h[10];
	int64_t n;
	memcpy(&n, h + 24, 8);
	if (log2_index > 40 || n < 0 || n > MAX_DICT || kind > 2)
		return 0;
	uint64_t ents = keys + 32 + (1ull << log2_index);
	size_t es = kind == 0 ? 24 : 16, ko = kind == 0 ? 8 : 0;
	for (int64_t i = 0; i < n; i++) {
		uint64_t k;
		if (!r64(a, ents + (uint64_t)i * es + ko, &k) || !k || !str_is(a, k, name))
			continue;
		uint64_t v;
		if (values) { /* split: the values array, 3.13's after its 8-byte prefix */
			uint64_t at = values + (a->o->attrs_kind == 3 ? 8 : 0) + 8 * (uint64_t)i;
			return r64(a, at, &v) ? v : 0;
		}
		return r64(a, ents + (uint64_t)i * es + ko + 8, &v) ? v : 0;
	}
	return 0;
}

/* An instance attribute kept in its managed dict (or values), 0 if none. */
static uint64_t attr_get(struct pyasync *a, uint64_t obj, const char *name)
{
	const struct kiln_py_offsets *o = a->o;
	uint64_t t = type_of(a, obj), ck = 0, values = 0, dict = 0;
	if (!t)
		return 0;
	if (o->attrs_kind == 4) { /* 3.10: the instance's __dict__, where its type says */
		int64_t doff = 0;
		if (!pyproc__read(a->pp, t + o->tp_dictoffset, &doff, 8) || doff <= 0 || doff > 4096 ||
		    !r64(a, obj + (uint64_t)doff, &dict) || !dict)
			return 0;
		return dict_get(a, dict, name);
	}
	/* the attribute's index among the type's shared keys */
	int64_t idx = -1;
	if (r64(a, t + o->ht_cached_keys, &ck) && ck) {
		unsigned char h[32];
		int64_t n;
		if (pyproc__read(a->pp, ck, h, sizeof(h)) && h[9] <= 40) {
			memcpy(&n, h + 24, 8);
			for (int64_t i = 0; i >= 0 && i < n && i < 64; i++) {
				uint64_t k;
				if (r64(a, ck + 32 + (1ull << h[9]) + 16 * (uint64_t)i, &k) && k && str_is(a, k, name)) {
					idx = i;
					break;
				}
			}
		}
	}
	uint64_t v;
	switch (o->attrs_kind) {
	case 1: /* 3.11: values at obj-32, dict at obj-24 */
		r64(a, obj - 32, &values);
		r64(a, obj - 24, &dict);
		if (values && idx >= 0)
			return r64(a, values + 8 * (uint64_t)idx, &v) ? v : 0;
		break;
	case 2: { /* 3.12: one word at obj-24, odd when it is the values (stored less one) */
		uint64_t dv;
		r64(a, obj - 24, &dv);
		if (dv & 1) {
			values = dv + 1;
			if (idx >= 0)
				return r64(a, values + 8 * (uint64_t)idx, &v) ? v : 0;
		} else {
			dict = dv;
		}
		break;
	}
	case 3: { /* 3.13: values inline after the object while valid, else the dict at obj-24 */
		uint64_t flags = 0, basic = 0;
		unsigned char pre[4];
		if (r64(a, t + o->tp_flags, &flags) && (flags & (1u << 2)) && r64(a, t + o->tp_basicsize, &basic) &&
		    basic < 4096 && pyproc__read(a->pp, obj + basic, pre, 4) && pre[3] && idx >= 0 && idx < pre[0])
			return r64(a, obj + basic + 8 + 8 * (uint64_t)idx, &v) ? v : 0;
		r64(a, obj - 24, &dict);
		break;
	}
	default:
		return 0;
	}
	return dict ? dict_get(a, dict, name) : 0;
}

/* "Task NAME" of a task object into out. */
static bool task_name(struct pyasync *a, uint64_t task, char *out, size_t n)
{
	uint64_t nm;
	if (!r64(a, task + a->o->task_name, &nm) || !nm)
		return false;
	char *s = pyproc__str(a->pp, nm);
	if (s) {
		snprintf(out, n, "Task %s", s);
		free(s);
		return true;
	}
	if (!is_a(a, nm, "int", NULL, 0))
		return false;
	uint64_t tag;
	uint32_t digit;
	if (!r64(a, nm + a->o->long_size_tag, &tag) || !pyproc__read(a->pp, nm + 24, &digit, 4))
		return false;
	uint64_t ndigits = a->o->long_tagged ? tag >> 3 : tag;
	if (ndigits == 1)
		snprintf(out, n, "Task Task-%u", digit); /* a task named by its counter, as get_name() spells it */
	else
		snprintf(out, n, "Task Task-?");
	return true;
}

static bool is_task(struct pyasync *a, uint64_t obj)
{
	return obj && is_a(a, obj, "_asyncio.Task", &a->task_type, 4);
}

/* 3.10: the coroutine points at its frame (cr_frame); suspended in an
 * await, the frame's f_state says so, a YIELD_FROM follows its last
 * instruction and the awaited object is on its value stack's top (as
 * _PyGen_yf reads it). */
#define YIELD_FROM_310 72
static bool coro_frame_310(struct pyasync *a, uint64_t coro, struct pyframe *f, uint64_t *next)
{
	const struct kiln_py_offsets *o = a->o;
	unsigned char fr[KILN_PY_FRAME_MAX];
	uint64_t fa = 0, vs, bytes;
	if (!r64(a, coro + o->gen_iframe, &fa) || !fa || o->fr_size > sizeof(fr) ||
	    !pyproc__read(a->pp, fa, fr, o->fr_size))
		return false;
	struct kiln_py_frame d;
	kiln_py_frame_read(fr, o, &d);
	if (!d.code)
		return false;
	*f = (struct pyframe){.code = d.code, .lasti = d.lasti, .addr = fa};
	int8_t state = (int8_t)fr[o->gen_state];
	int32_t depth, lasti;
	unsigned char op;
	memcpy(&depth, fr + o->fr_stacktop, 4);
	memcpy(&vs, fr + o->fr_valuestack, 8);
	memcpy(&lasti, fr + o->fr_instr, 4);
	if (state != o->gen_awaiting || depth <= 0 || depth > 4096 || lasti < 0 || !r64(a, d.code + o->co_code, &bytes) ||
	    !bytes || !pyproc__read(a->pp, bytes + o->bytes_sval + 2 * ((uint64_t)lasti + 1), &op, 1) ||
	    op != YIELD_FROM_310 || !r64(a, vs + 8 * (uint64_t)(depth - 1), next))
		*next = 0;
	return true;
}

/* coro's frame into *f, false when it cannot be read; *next what it
 * awaits, 0 if it awaits nothing. 3.11+: the frame is embedded in the
 * coroutine, which is suspended in an await with the awaited object on its
 * stack's top. */
static bool coro_frame(struct pyasync *a, uint64_t coro, struct pyframe *f, uint64_t *next)
{
	const struct kiln_py_offsets *o = a->o;
	*next = 0;
	if (o->frame_object)
		return coro_frame_310(a, coro, f, next);
	uint64_t fa = coro + o->gen_iframe;
	unsigned char fr[KILN_PY_FRAME_MAX];
	if (o->fr_size > sizeof(fr) || !pyproc__read(a->pp, fa, fr, o->fr_size))
		return false;
	struct kiln_py_frame d;
	kiln_py_frame_read(fr, o, &d);
	*f = (struct pyframe){.code = d.code, .lasti = d.lasti, .addr = fa};
	int8_t state;
	int32_t top;
	if (!pyproc__read(a->pp, coro + o->gen_state, &state, 1) || state != o->gen_awaiting ||
	    !pyproc__read(a->pp, fa + o->fr_stacktop, &top, 4) || top <= 0 || top > 4096 ||
	    !r64(a, fa + o->fr_localsplus + 8 * (uint64_t)(top - 1), next))
		*next = 0;
	return true;
}

/* The await chain from coro (innermost first into t->chain). */
static void chain_of(struct pyasync *a, uint64_t coro, struct pytask *t)
{
	struct pyframe outer[PYASYNC_CHAIN];
	int n = 0;
	while (coro && n < PYASYNC_CHAIN && is_a(a, coro, "coroutine", &a->coro_type, 0)) {
		uint64_t next;
		if (!coro_frame(a, coro, &outer[n], &next))
			break;
		n++;
		if (!next)
			break;
		/* awaiting a future goes through its iterator (the C Future's
		 * __await__), which holds the future */
		uint64_t fut = next;
		if (is_a(a, next, "_asyncio.FutureIter", &a->futiter_type, 0))
			r64(a, next + 16, &fut);
		if (is_a(a, fut, "_GatheringFuture", &a->gather_type, 0)) {
			if (n < PYASYNC_CHAIN)
				outer[n++] = (struct pyframe){.code = 1, .label = "gather"};
			break;
		}
		coro = next;
	}
	t->nchain = n;
	for (int i = 0; i < n; i++)
		t->chain[i] = outer[n - 1 - i];
}

/* The frames of the loop's machinery are outermost (asyncio.run, the loop,
 * _run_once, Handle._run): only so many from the outside are looked at, and
 * a code object once named is known by its address after. */
#define SCAN_OUTER 32

void pyasync__scan(struct pyasync *a, const struct pyframe *fr, int n, struct pyasync_at *w)
{
	w->handle = w->run_once = -1;
	for (int i = n - 1; i >= 0 && i >= n - SCAN_OUTER && w->handle < 0; i--) {
		uint64_t c = fr[i].code;
		if (!c || fr[i].label || !fr[i].addr)
			continue;
		if (w->run_once < 0 && (c == a->run_once_code ||
					(!a->run_once_code &&
					 frame_is(a, &fr[i], "BaseEventLoop._run_once", "asyncio/base_events.py")))) {
			a->run_once_code = c;
			w->run_once = i;
		} else if (i >= 1 && (c == a->handle_run_code ||
				      (!a->handle_run_code && frame_is(a, &fr[i], "Handle._run", "asyncio/events.py")))) {
			a->handle_run_code = c;
			w->handle = i;
		}
	}
}

/* Handle._callback's offset in a Handle type: a slot, found by name in the
 * type's member table (0: none). */
static uint64_t callback_offset(struct pyasync *a, uint64_t type)
{
	uint64_t members;
	if (!r64(a, type + a->o->tp_members, &members) || !members)
		return 0;
	for (int m = 0; m < MAX_MEMBERS; m++) {
		unsigned char md[40];
		uint64_t name;
		int64_t off;
		char nm[16];
		if (!pyproc__read(a->pp, members + 40 * (uint64_t)m, md, sizeof(md)))
			break;
		memcpy(&name, md, 8);
		memcpy(&off, md + 16, 8);
		if (!name)
			break;
		if (pyproc__read(a->pp, name, nm, 10) && !memcmp(nm, "_callback", 10) && off > 0 && off < 4096)
			return (uint64_t)off;
	}
	return 0;
}

int pyasync__running(struct pyasync *a, const struct pyframe *fr, int at, struct pytask *out)
{
	uint64_t self, t, cb, task = 0;
	if (at < 0 || !r64(a, fr[at].addr + a->o->fr_localsplus, &self) || !(t = type_of(a, self)))
		return -1;
	if (t != a->handle_type) {
		a->cb_off = callback_offset(a, t);
		a->handle_type = a->cb_off ? t : 0;
	}
	if (!a->cb_off || !r64(a, self + a->cb_off, &cb) || !cb)
		return -1;
	if (is_a(a, cb, "TaskStepMethWrapper", &a->step_type, 0))
		r64(a, cb + 16, &task);
	else if (is_a(a, cb, "builtin_function_or_method", &a->method_type, 0))
		r64(a, cb + 24, &task);
	memset(out, 0, sizeof(*out));
	out->handle = self;
	if (!is_task(a, task) || !task_name(a, task, out->name, sizeof(out->name)))
		return 1; /* a callback that is no task's step */
	out->addr = task;
	return 0;
}

uint64_t pyasync__loop(struct pyasync *a, const struct pyframe *fr, int run_once)
{
	uint64_t self;
	return run_once >= 0 && r64(a, fr[run_once].addr + a->o->fr_localsplus, &self) ? self : 0;
}

/* The tasks set(s) of asyncio.tasks, found from base_events' globals once
 * and checked at each use. */
static bool task_sets(struct pyasync *a, uint64_t globals)
{
	if (a->ws_set && is_a(a, a->ws_set, "set", NULL, 0) && a->globals == globals)
		return true;
	a->globals = globals;
	a->ws = a->ws_set = a->eager_set = 0;
	uint64_t mod = dict_get(a, globals, "tasks"), md;
	if (!mod || !is_a(a, mod, "module", NULL, 0) || !r64(a, mod + 16, &md) || !md)
		return false;
	a->tasks_dict = md;
	bool v311 = a->o->version <= 0x30b; /* 3.10 and 3.11: one WeakSet of every task */
	a->ws = dict_get(a, md, v311 ? "_all_tasks" : "_scheduled_tasks");
	if (!v311) {
		uint64_t e = dict_get(a, md, "_eager_tasks");
		a->eager_set = e && is_a(a, e, "set", NULL, 0) ? e : 0;
	}
	if (!a->ws || !is_a(a, a->ws, "WeakSet", NULL, 0))
		return false;
	uint64_t s = attr_get(a, a->ws, "data");
	if (!s || !is_a(a, s, "set", NULL, 0))
		return false;
	a->ws_set = s;
	return true;
}

/* Pending tasks of loop in set s (weak: its keys are weak references). */
static int from_set(struct pyasync *a, uint64_t s, bool weak, uint64_t loop, uint64_t running, struct pytask *out,
		    int k, int max, bool *more)
{
	int64_t mask;
	uint64_t table;
	if (!pyproc__read(a->pp, s + 32, &mask, 8) || !r64(a, s + 40, &table) || mask < 0)
		return k;
	uint64_t n = (uint64_t)mask + 1;
	if (n > MAX_SET) {
		n = MAX_SET;
		*more = true;
	}
	if (!pyproc__read(a->pp, table, a->table, n * 16))
		return k;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t key, task = 0, tl;
		int32_t state;
		memcpy(&key, a->table + 16 * i, 8);
		if (!key)
			continue;
		if (weak)
			r64(a, key + 16, &task); /* wr_object: a dummy entry's is no task */
		else
			task = key;
		if (!task || task == running || !is_task(a, task) || !r64(a, task + a->o->task_loop, &tl) ||
		    tl != loop || !pyproc__read(a->pp, task + a->o->task_state, &state, 4) || state != 0)
			continue;
		if (k == max) {
			*more = true;
			break;
		}
		struct pytask *t = &out[k];
		memset(t, 0, sizeof(*t));
		t->addr = task;
		if (!task_name(a, task, t->name, sizeof(t->name)))
			continue;
		uint64_t coro;
		if (r64(a, task + a->o->task_coro, &coro))
			chain_of(a, coro, t);
		k++;
	}
	return k;
}

int pyasync__suspended(struct pyasync *a, const struct pyframe *fr, int n, int run_once, uint64_t loop,
		       uint64_t running, struct pytask *out, int max, bool *more)
{
	*more = false;
	uint64_t globals;
	if (run_once < 0 || run_once >= n || !loop || !r64(a, fr[run_once].addr + a->o->fr_globals, &globals) ||
	    !task_sets(a, globals))
		return 0;
	int k = from_set(a, a->ws_set, true, loop, running, out, 0, max, more);
	if (a->eager_set)
		k = from_set(a, a->eager_set, false, loop, running, out, k, max, more);
	return k;
}
