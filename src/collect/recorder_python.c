/* The recorder's CPython: an interpreter found in a process's maps, the
 * code objects the shim names, Python frames as locations of the one
 * [python] module, and the stacks that merge them with the native frames
 * (collect/python.h says how they are read). */
#include <string.h>
#include "collect/recorder_int.h"
#include "kiln/python.h"

static void python_notice(struct recorder *r, uint32_t pid, const char *why)
{
	json_t *n = json_object_get(r->meta, "python_notices");
	if (!json_is_array(n)) {
		n = json_array();
		json_object_set_new(r->meta, "python_notices", n);
	}
	if (json_array_size(n) < 16) {
		char line[320];
		snprintf(line, sizeof(line), "pid %u: %s", pid, why);
		json_array_append_new(n, json_string(line));
	}
}

/* img, mapped in p at bias, may be a CPython interpreter or libpython. */
void recorder_python_detect(struct recorder *r, struct rproc *p, struct image *img, uint64_t bias)
{
	char why[256];
	p->py = pyproc__detect(img, bias, (pid_t)p->pid, why, sizeof(why));
	if (p->py) {
		p->py_img = img;
		p->py_bias = bias;
		if (pyproc__offsets(p->py)->frame_object)
			python_notice(r, p->pid,
				      "CPython 3.10: a method is named without its class (no co_qualname before 3.11)");
		if (r->on_python)
			r->on_python(r->on_python_ctx, p->pid, p->py);
	} else if (why[0]) {
		python_notice(r, p->pid, why);
		p->py_img = img; /* checked: not again */
	}
	r->meta_dirty = true;
}

static void python_frames_forget(struct rproc *p);

void recorder_python_forget(struct rproc *p)
{
	python_frames_forget(p);
	pyproc__free(p->py);
	p->py = NULL;
	p->py_img = NULL;
}

void recorder__python_code(struct recorder *r, uint32_t pid, uint64_t code, int32_t first, const unsigned char *qual,
			   size_t qlen, unsigned qkind, const unsigned char *file, size_t flen, unsigned fkind,
			   const unsigned char *table, size_t tlen)
{
	struct rproc *p = recorder_proc_find(r, pid);
	if (p && p->py && pyproc__define(p->py, code, first, qual, qlen, qkind, file, flen, fkind, table, tlen) == 1)
		python_frames_forget(p); /* another object at an address already named */
}

void recorder__on_python(struct recorder *r, void (*fn)(void *ctx, uint32_t pid, struct pyproc *py), void *ctx)
{
	r->on_python = fn;
	r->on_python_ctx = ctx;
}

void recorder__set_python_reader(struct recorder *r, const char *how)
{
	free(r->py_reader);
	r->py_reader = how ? xstrdup(how) : NULL;
	r->meta_written = false;
}

struct pyproc *recorder__python(struct recorder *r, uint32_t pid)
{
	struct rproc *p = recorder_proc_find(r, pid);
	return p ? p->py : NULL;
}

static uint32_t loc_get_py_named(struct recorder *r, struct rproc *p, const struct pyframe *f);

static void python_frames_forget(struct rproc *p)
{
	intern__release(&p->pyframes);
	intern__init(&p->pyframes);
}

/* The location of a Python frame: (function, file, line), in the one
 * [python] module. A heap stack's frames (which carry the code object's
 * first line) are remembered by {code, first line, instruction}: a stack
 * sent again costs no naming. */
static uint32_t loc_py(struct recorder *r, const char *func, const char *file, uint32_t line, uint32_t def_line);

static uint32_t loc_get_py(struct recorder *r, struct rproc *p, const struct pyframe *f)
{
	if (f->label)
		return loc_py(r, f->label, "", 0, 0);
	if (!f->has_first)
		return loc_get_py_named(r, p, f);
	uint64_t key[2] = {f->code, (uint64_t)(uint32_t)f->first << 32 | f->lasti};
	bool added;
	uint32_t k = intern__put(&p->pyframes, key, sizeof(key), &added);
	ARR_GROW(p->pyframe_loc, p->cpyframe_loc, k + 1);
	if (added)
		p->pyframe_loc[k] = loc_get_py_named(r, p, f);
	return p->pyframe_loc[k];
}

/* A frame of the [python] module that names no function: what a sample
 * lacks, said in its place. */
static uint32_t loc_py_marker(struct recorder *r, const char *what)
{
	return loc_py(r, what, "", 0, 0);
}

/* The location of a Python frame, named now. A code object that no longer
 * reads as one is named so. */
static uint32_t loc_get_py_named(struct recorder *r, struct rproc *p, const struct pyframe *f)
{
	const char *func, *file;
	uint32_t line, def = 0;
	if (!pyproc__name(p->py, f, &func, &file, &line, &def)) {
		func = "[unreadable Python frame]";
		file = "";
		line = 0;
		p->py_unreadable++;
	}
	return loc_py(r, func, file, line, def);
}

/* func and file, at line of the function defined at def_line */
static uint32_t loc_py(struct recorder *r, const char *func, const char *file, uint32_t line, uint32_t def_line)
{
	if (!r->has_py) {
		r->py_module = recorder_module_get(r, "[python]", "[python]", MOD_PYTHON, 0, NULL);
		r->has_py = true;
	}
	struct buf *b = &r->scratch;
	b->len = 0;
	buf__put(b, func, strlen(func) + 1);
	buf__put(b, file, strlen(file) + 1);
	buf__u32(b, line);
	buf__u32(b, def_line);
	uint32_t name = intern__put(&r->pynames, b->data, (uint32_t)b->len, NULL);
	struct {
		uint32_t module, flags;
		uint64_t addr;
	} key = {.module = r->py_module, .flags = 0, .addr = name};
	return intern__put(&r->locs, &key, sizeof(key), NULL);
}

uint32_t recorder__stack_pyonly(struct recorder *r, uint32_t pid, const struct pyframe *py, int npy)
{
	struct rproc *p = recorder__proc(r, pid);
	if (!p->py || npy <= 0)
		return 0;
	if (npy > KILN_MAX_DEPTH)
		npy = KILN_MAX_DEPTH;
	uint32_t key[2 + KILN_MAX_DEPTH];
	key[0] = 0;
	key[1] = (uint32_t)npy;
	for (int i = 0; i < npy; i++)
		key[2 + i] = loc_get_py(r, p, &py[i]);
	return intern__put(&r->stacks, key, (uint32_t)(2 + npy) * 4, NULL);
}

void recorder__slow(struct recorder *r, uint32_t pid, uint32_t tid, uint64_t start_ns, uint64_t dur_ns,
		    uint32_t stack, const char *task)
{
	if (r->slows >= RECORDER_MAX_SLOW) {
		if (!r->slows_dropped++)
			r->meta_dirty = true;
		return;
	}
	r->slows++;
	ARR_GROW(r->slow, r->cslow, r->nslow + 1);
	r->slow[r->nslow++] = (struct rec_slow){pid, tid, start_ns, dur_ns, stack, xstrdup(task)};
}

uint32_t recorder__stack_py(struct recorder *r, uint32_t pid, const uint64_t *ips, int n, int exact_a, int exact_b,
			    bool truncated, const struct pyframe *py, int npy)
{
	struct rproc *p = recorder__proc(r, pid);
	if (!p->py)
		return recorder__stack_at(r, pid, ips, n, exact_a, exact_b, truncated);
	if (n > KILN_MAX_DEPTH) {
		n = KILN_MAX_DEPTH;
		truncated = true;
	}
	uint8_t kinds[KILN_MAX_DEPTH];
	int evals = 0;
	for (int i = 0; i < n; i++) {
		if (pyproc__is_eval(p->py, ips[i])) {
			kinds[i] = PYK_EVAL;
			evals++;
		} else if (pyproc__is_call_path(p->py, ips[i])) {
			kinds[i] = PYK_CALL;
		} else {
			struct rmap *m = ips[i] < KILN_KERNEL_START ? recorder_map_at(p, ips[i]) : NULL;
			kinds[i] = (m && m->img) || ips[i] >= KILN_KERNEL_START ? PYK_NATIVE : PYK_ANON;
		}
	}
	if (!evals)
		return recorder__stack_at(r, pid, ips, n, exact_a, exact_b, truncated);
	/* an interpreter shim frame is no function of the program's: it
	 * stays only as the empty call it may stand for */
	struct pyframe kept[KILN_MAX_DEPTH];
	int nkept = 0;
	for (int i = 0; i < npy && nkept < KILN_MAX_DEPTH; i++) {
		if (!pyproc__is_shim(p->py, py[i].code)) {
			kept[nkept++] = py[i];
		} else if (py[i].last_of_call) {
			kept[nkept] = py[i];
			kept[nkept++].code = 0;
		}
	}
	if (npy >= 0) {
		py = kept;
		npy = nkept;
	}
	if (npy >= 0 && pyproc__offsets(p->py)->frame_object) {
		/* 3.10 publishes a frame (tstate->frame) inside its loop call,
		 * a few instructions after it begins, and takes it back a few
		 * before it returns: a loop call one more than the frames is the
		 * innermost in that window, its code not running yet (or any
		 * more). It stays a native frame of the caller's function. */
		int groups = 0, i = 0;
		for (int k = 0; k < npy; k++)
			groups += py[k].last_of_call;
		if (evals == groups + 1) {
			while (kinds[i] != PYK_EVAL) /* evals > 0: there is one */
				i++;
			kinds[i] = PYK_NATIVE;
		}
	}
	int32_t order[KILN_MAX_DEPTH];
	int k = npy >= 0 ? python__merge(kinds, n, py, npy, truncated, order, KILN_MAX_DEPTH) : -1;
	if (k < 0) {
		/* said in META by the final flush (recorder__finish) */
		if (npy == -1)
			p->py_unread++;
		else if (npy == -3)
			p->py_missing++;
		else if (npy == PYFRAMES_CYCLIC)
			p->py_cyclic++;
		else
			p->py_unmerged++;
		/* the sample ran Python code kiln could not name: it is shown as
		 * that, never under the native frames (which would take its share
		 * from the function it ran) */
		uint32_t key[3] = {0, 1, loc_py_marker(r, "[python frames unreadable]")};
		return intern__put(&r->stacks, key, sizeof(key), NULL);
	}
	p->py_merged++;
	uint32_t key[2 + KILN_MAX_DEPTH];
	key[0] = truncated ? STACK_TRUNCATED : 0;
	key[1] = (uint32_t)k;
	for (int i = 0; i < k; i++)
		key[2 + i] = order[i] >= 0 ? recorder_loc_get(r, p, ips[order[i]], order[i] != exact_a && order[i] != exact_b)
					   : loc_get_py(r, p, &py[-order[i] - 1]);
	return intern__put(&r->stacks, key, (uint32_t)(2 + k) * 4, NULL);
}
