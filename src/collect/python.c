/* Reading a CPython process from outside (see python.h). Every read is a
 * process_vm_readv of memory the profiled program owns and may change while
 * we read: every pointer is checked before it is followed, every length is
 * bounded, a chain is walked a bounded number of steps, and a code object is
 * believed only while its type is PyCode_Type. */
#include <errno.h>
#include <elf.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>
#include "collect/bpf/pyframes.h"
#include "symbols/image.h"
#include "collect/python_int.h"

/* Before 3.11 a CPython has no Py_Version: its cache tag, the literal
 * "cpython-3NN" sys.implementation.cache_tag is made of, a string of its
 * own in the image's read-only data, says which it is. PY_VERSION_HEX's
 * major and minor, or 0. */
static uint32_t cache_tag_hex(const struct image *img)
{
	for (size_t i = 0; i < img->nloads; i++) {
		const struct image_load *l = &img->loads[i];
		if ((l->flags & PF_W) || l->off > img->size || l->filesz > img->size - l->off)
			continue;
		uint32_t hex = kiln_py_cache_tag(img->data + l->off, img->data + l->off + l->filesz);
		if (hex)
			return hex;
	}
	return 0;
}

/* Where glibc's struct pthread (a pthread_t points at it) keeps the thread's
 * id: found in kiln's own threads, the same C library as the programs it
 * runs beside (a 3.10 thread state names its thread by pthread_t). The
 * first offset that holds the tid in two threads' descriptors, or -1. */
#define TID_SCAN 2048
static void *tid_offsets(void *arg)
{
	int *offs = arg, n = 0;
	const unsigned char *self = (const unsigned char *)pthread_self();
	pid_t tid = gettid();
	for (int off = 0; off + 4 <= TID_SCAN && n < 8; off += 4)
		if (!memcmp(self + off, &tid, 4))
			offs[n++] = off;
	return NULL;
}

int python__pthread_tid_offset(void)
{
	static int found = -2;
	if (found != -2)
		return found;
	int mine[8], theirs[8];
	memset(mine, -1, sizeof(mine));
	memset(theirs, -1, sizeof(theirs));
	tid_offsets(mine);
	pthread_t th;
	found = -1;
	if (pthread_create(&th, NULL, tid_offsets, theirs) != 0)
		return found;
	pthread_join(th, NULL);
	for (int i = 0; i < 8 && found < 0 && mine[i] >= 0; i++)
		for (int j = 0; j < 8 && theirs[j] >= 0; j++)
			if (mine[i] == theirs[j]) {
				found = mine[i];
				break;
			}
	return found;
}

struct pyproc *pyproc__detect(const struct image *img, uint64_t bias, pid_t pid, char *why, size_t n)
{
	uint64_t rt, rtsz, ev, evsz, ct, ctsz, ver, versz;
	why[0] = 0;
	if (image__find_symbol(img, "_PyRuntime", &rt, &rtsz) < 0) {
		/* 2.x to 3.6: an evaluation loop, no runtime state to start from */
		if (image__find_symbol(img, "PyEval_EvalFrameEx", &ev, &evsz) == 0)
			snprintf(why, n, "a CPython older than 3.7 (no _PyRuntime in %s): native frames only",
				 path_base(img->path));
		return NULL;
	}
	uint32_t hex = 0;
	if ((image__find_symbol(img, "Py_Version", &ver, &versz) < 0 || image__read(img, ver, &hex, 4) < 0) &&
	    !(hex = cache_tag_hex(img))) {
		snprintf(why, n, "a Python whose version kiln cannot read (no Py_Version nor cache tag in %s): native frames only",
			 path_base(img->path));
		return NULL;
	}
	const struct kiln_py_offsets *t = kiln_py_table(hex);
	if (t && !kiln_py_offsets_valid(t))
		t = NULL; /* never: each table row is checked by the unit tests */
	if (!t) {
		snprintf(why, n, "Python %u.%u (%s) has no frame table in this kiln: native frames only", hex >> 24,
			 (hex >> 16) & 0xff, path_base(img->path));
		return NULL;
	}
	if (image__find_symbol(img, "_PyEval_EvalFrameDefault", &ev, &evsz) < 0 || !evsz ||
	    image__find_symbol(img, "PyCode_Type", &ct, &ctsz) < 0) {
		snprintf(why, n, "Python %u.%u (%s) without _PyEval_EvalFrameDefault or PyCode_Type symbols: native frames only",
			 hex >> 24, (hex >> 16) & 0xff, path_base(img->path));
		return NULL;
	}
	int tid_off = -1;
	if (t->ts_native_tid == KILN_PY_NONE && (tid_off = python__pthread_tid_offset()) < 0) {
		snprintf(why, n, "Python %u.%u (%s) names its threads by pthread_t, and this C library's thread descriptor "
			 "shows no thread id kiln can find: native frames only", hex >> 24, (hex >> 16) & 0xff,
			 path_base(img->path));
		return NULL;
	}
	struct pyproc *pp = xcalloc(1, sizeof(*pp));
	pp->pid = pid;
	pp->o = *t;
	pp->tid_off = tid_off;
	if (t->version >= 0x30d) {
		/* the interpreter's own offsets, from its initialized data */
		unsigned char dbg[KILN_PY_DBG_SIZE];
		struct kiln_py_offsets o;
		if (image__read(img, rt, dbg, sizeof(dbg)) < 0 || kiln_py_from_debug(dbg, t, &o) < 0) {
			snprintf(why, n, "Python %u.%u (%s): its _Py_DebugOffsets do not read as 3.13's: native frames only",
				 hex >> 24, (hex >> 16) & 0xff, path_base(img->path));
			free(pp);
			return NULL;
		}
		pp->o = o;
	}
	snprintf(pp->version, sizeof(pp->version), "%u.%u", hex >> 24, (hex >> 16) & 0xff);
	pp->runtime = rt + bias;
	pp->code_type = ct + bias;
	pp->eval_lo = ev + bias;
	pp->eval_hi = ev + evsz + bias;
	if (t->frame_object) {
		/* what 3.10's loop calls a Python function through (a static
		 * one is found where the image keeps its symbol table) */
		static const char *const calls[] = {"_PyEval_Vector", "_PyFunction_Vectorcall", "method_vectorcall",
						    "PyVectorcall_Call", "_PyObject_Call", "PyObject_Call"};
		for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]) && pp->ncalls < 8; i++) {
			uint64_t a, sz;
			if (image__find_symbol(img, calls[i], &a, &sz) == 0 && sz) {
				pp->call_lo[pp->ncalls] = a + bias;
				pp->call_hi[pp->ncalls++] = a + sz + bias;
			}
		}
	}
	uint64_t sh, shsz;
	if (t->version >= 0x30d && image__find_symbol(img, "_Py_InitCleanup", &sh, &shsz) == 0)
		pp->init_shim = sh + bias;
	u64map__init(&pp->tstates);
	u64map__init(&pp->defs);
	pp->codes = xcalloc(PY_CODE_CACHE, sizeof(*pp->codes));
	return pp;
}

void pyproc__free(struct pyproc *pp)
{
	if (!pp)
		return;
	for (size_t i = 0; i < PY_CODE_CACHE; i++)
		pycode_release(&pp->codes[i]);
	free(pp->codes);
	for (size_t i = 0; i < pp->ndefs; i++)
		pycode_release(&pp->defv[i]);
	free(pp->defv);
	u64map__release(&pp->defs);
	u64map__release(&pp->tstates);
	free(pp);
}

const char *pyproc__version(const struct pyproc *pp)
{
	return pp->version;
}

bool pyproc__is_shim(const struct pyproc *pp, uint64_t code)
{
	return code && code == pp->init_shim;
}

bool pyproc__is_eval(const struct pyproc *pp, uint64_t ip)
{
	return ip >= pp->eval_lo && ip < pp->eval_hi;
}

bool pyproc__is_call_path(const struct pyproc *pp, uint64_t ip)
{
	for (int i = 0; i < pp->ncalls; i++)
		if (ip >= pp->call_lo[i] && ip < pp->call_hi[i])
			return true;
	return false;
}

/* The native id of the thread whose state ts is: native_thread_id (3.11+),
 * or the tid in the struct pthread its thread_id names (3.10). */
static bool ts_tid(const struct pyproc *pp, uint64_t ts, uint64_t *tid)
{
	const struct kiln_py_offsets *o = &pp->o;
	if (o->ts_native_tid != KILN_PY_NONE)
		return rd64(pp->pid, ts + o->ts_native_tid, tid);
	uint64_t th = 0;
	int32_t t = 0;
	if (!rd64(pp->pid, ts + o->ts_thread_id, &th) || !th || pp->tid_off < 0 ||
	    !rd(pp->pid, th + (uint64_t)pp->tid_off, &t, 4))
		return false;
	*tid = t > 0 ? (uint64_t)t : 0;
	return true;
}

/* Every thread state of every interpreter, by native thread id. */
static void scan_threads(struct pyproc *pp)
{
	const struct kiln_py_offsets *o = &pp->o;
	u64map__clear(&pp->tstates);
	uint64_t interp = 0;
	if (!rd64(pp->pid, pp->runtime + o->rt_interp_head, &interp))
		return;
	unsigned seen = 0;
	pp->last_scan = now_ns();
	for (int ni = 0; interp && ni < 64; ni++) {
		uint64_t ts = 0;
		rd64(pp->pid, interp + o->is_threads_head, &ts);
		/* a list that comes back on itself (a corrupt or hostile
		 * interpreter state) ends where it does: Brent's cycle check */
		uint64_t mark = ts;
		unsigned power = 1, lam = 0;
		while (ts && seen++ < PY_MAX_THREADS) {
			uint64_t tid = 0;
			if (!ts_tid(pp, ts, &tid) && o->ts_native_tid != KILN_PY_NONE)
				break; /* (3.10: a thread not started yet names no pthread) */
			if (tid && tid < (1u << 31))
				u64map__upsert(&pp->tstates, tid, NULL)->v1 = ts;
			if (!rd64(pp->pid, ts + o->ts_next, &ts))
				break;
			if (ts == mark) {
				pp->cyclic_threads = true;
				break;
			}
			if (++lam == power) {
				mark = ts;
				power *= 2;
				lam = 0;
			}
		}
		if (!rd64(pp->pid, interp + o->is_next, &interp))
			break;
	}
}

static uint64_t tstate_of(struct pyproc *pp, pid_t tid)
{
	for (int pass = 0; pass < 2; pass++) {
		struct u64map_ent *e = u64map__find(&pp->tstates, (uint64_t)tid);
		uint64_t got;
		if (e && ts_tid(pp, e->v1, &got) && got == (uint64_t)tid)
			return e->v1;
		/* a thread with no Python state (a native worker) would rescan at
		 * each of its samples: at most every 20 ms */
		if (pass == 0 && (!pp->tstates.len || now_ns() - pp->last_scan > 20000000ull))
			scan_threads(pp);
		else
			break;
	}
	return 0;
}

/* Interpreter frames, innermost first, into pyframes: an entry frame owned
 * by the C stack (3.12+) ends one evaluation-loop call's frames, as 3.11's
 * is_entry does. */
struct pyframe_acc {
	struct pyframe *out;
	int n, max;
	bool truncated;
};

/* true when it appended a frame of code */
static bool pyframe_add(struct pyframe_acc *a, const struct kiln_py_frame *d)
{
	if (d->cstack) {
		/* the entry frame of one evaluation-loop call: its frames end here */
		if (a->n && !a->out[a->n - 1].last_of_call)
			a->out[a->n - 1].last_of_call = true;
		else
			a->out[a->n++] = (struct pyframe){.code = 0, .lasti = 0, .last_of_call = true};
		return false;
	}
	a->out[a->n++] = (struct pyframe){.code = d->code, .lasti = d->lasti, .last_of_call = d->entry};
	return d->code != 0;
}

static int pyframe_end(struct pyframe_acc *a, bool *truncated)
{
	if (a->n && !a->truncated)
		a->out[a->n - 1].last_of_call = true;
	*truncated = a->truncated;
	return a->n;
}

int pyproc__frames(struct pyproc *pp, pid_t tid, struct pyframe *out, int max, bool *truncated)
{
	const struct kiln_py_offsets *o = &pp->o;
	*truncated = false;
	uint64_t ts = tstate_of(pp, tid);
	if (!ts)
		return -1;
	uint64_t f = 0;
	if (o->ts_current_frame != KILN_PY_NONE) {
		if (!rd64(pp->pid, ts + o->ts_current_frame, &f))
			return 0;
	} else {
		uint64_t cf = 0;
		if (!rd64(pp->pid, ts + o->ts_cframe, &cf) || !cf)
			return 0;
		if (!rd64(pp->pid, cf + o->cf_current, &f))
			return 0;
	}
	unsigned char fr[128];
	size_t need = (size_t)o->fr_size;
	if (need > sizeof(fr))
		return 0;
	struct pyframe_acc a = {.out = out, .max = max};
	uint64_t mark = f;
	unsigned power = 1, lam = 0;
	for (int steps = 0; f && steps < 4096; steps++) {
		if (a.n == max) {
			a.truncated = true;
			break;
		}
		if (!rd(pp->pid, f, fr, need))
			break;
		if (steps && f == mark)
			return PYFRAMES_CYCLIC; /* the chain comes back on itself: no true stack */
		if (++lam == power) {
			mark = f;
			power *= 2;
			lam = 0;
		}
		struct kiln_py_frame d;
		kiln_py_frame_read(fr, o, &d);
		if (pyframe_add(&a, &d))
			a.out[a.n - 1].addr = f;
		f = d.previous;
	}
	return pyframe_end(&a, truncated);
}

int pyproc__frames_of(const struct pyproc *pp, const struct kiln_bpf_frame *raw, int n, bool cut,
		      struct pyframe *out, int max, bool *truncated)
{
	struct pyframe_acc a = {.out = out, .max = max, .truncated = cut};
	for (int i = 0; i < n; i++) {
		if (a.n == max) {
			a.truncated = true;
			break;
		}
		struct kiln_py_frame d;
		kiln_py_frame_of(raw[i].code, 0, raw[i].instr, raw[i].owner, raw[i].is_entry, &pp->o, &d);
		if (pyframe_add(&a, &d)) {
			a.out[a.n - 1].first = raw[i].first;
			a.out[a.n - 1].has_first = true;
		}
	}
	return pyframe_end(&a, truncated);
}


int pyproc__gil_holder(struct pyproc *pp, pid_t tid)
{
	const struct kiln_py_offsets *o = &pp->o;
	uint64_t gil = 0, holder = 0, interp = 0;
	int32_t locked = 0;
	if (o->gil_rt != KILN_PY_NONE)
		gil = pp->runtime + o->gil_rt;
	else if (o->gil_interp == KILN_PY_NONE || !rd64(pp->pid, pp->runtime + o->rt_interp_head, &interp) ||
		 !rd64(pp->pid, interp + o->gil_interp, &gil))
		return -1;
	if (!gil || !rd64(pp->pid, gil + 8, &holder) || !rd(pp->pid, gil + 16, &locked, 4))
		return -1;
	uint64_t ts = tstate_of(pp, tid);
	if (!ts)
		return -1;
	return locked && holder == ts;
}

bool pyproc__cyclic_threads(const struct pyproc *pp)
{
	return pp->cyclic_threads;
}

bool pyproc__read(const struct pyproc *pp, uint64_t addr, void *out, size_t n)
{
	return rd(pp->pid, addr, out, n);
}

char *pyproc__str(struct pyproc *pp, uint64_t addr)
{
	char t[16];
	if (!pyproc__type_name(pp, addr, t, sizeof(t)) || strcmp(t, "str"))
		return NULL;
	return pycode_read_str(pp, addr);
}

bool pyproc__type_name(const struct pyproc *pp, uint64_t obj, char *out, size_t n)
{
	uint64_t type, name;
	if (n < 2 || !rd64(pp->pid, obj + 8, &type) || !rd64(pp->pid, type + 24, &name)) /* ob_type, tp_name */
		return false;
	/* a C string of unknown length: read a page's worth at most, stop at its end */
	size_t want = n - 1, page = 4096 - (name & 4095);
	if (want > page && !rd(pp->pid, name, out, want))
		want = page;
	if (!rd(pp->pid, name, out, want))
		return false;
	out[want] = 0;
	return out[0] != 0;
}

const struct kiln_py_offsets *pyproc__offsets(const struct pyproc *pp)
{
	return &pp->o;
}

uint64_t pyproc__runtime(const struct pyproc *pp)
{
	return pp->runtime;
}

int python__merge(const uint8_t *kinds, int n, const struct pyframe *py, int npy, bool truncated, int32_t *order,
		  int max)
{
	int k = 0, next = 0;
	bool after_eval = false;
	for (int i = 0; i < n; i++) {
		if (kinds[i] == PYK_EVAL) {
			if (next >= npy) /* a loop call with no Python frames left */
				return truncated ? k : -1; /* cut short (either side): keep what agrees */
			for (; next < npy; next++) {
				bool last = py[next].last_of_call;
				if (py[next].code) {
					if (k == max)
						return -1;
					order[k++] = -(next + 1);
				}
				if (last) {
					next++;
					break;
				}
			}
			after_eval = true;
			continue;
		}
		if (kinds[i] == PYK_ANON && after_eval) {
			after_eval = false; /* the trampoline that called the loop */
			continue;
		}
		if (kinds[i] == PYK_CALL && after_eval) {
			int j = i;
			while (j < n && kinds[j] == PYK_CALL)
				j++;
			if (j < n && kinds[j] == PYK_EVAL) {
				i = j - 1; /* one Python function calling another (3.10) */
				continue;
			}
		}
		after_eval = false;
		if (k == max)
			return -1;
		order[k++] = i;
	}
	if (next < npy && !truncated)
		return -1;
	return k;
}
