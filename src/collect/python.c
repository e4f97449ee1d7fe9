/* Reading a CPython process from outside (see python.h). Every read is a
 * process_vm_readv of memory the profiled program owns and may change while
 * we read: every pointer is checked before it is followed, every length is
 * bounded, a chain is walked a bounded number of steps, and a code object is
 * believed only while its type is PyCode_Type. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include "collect/bpf/pyframes.h"
#include "collect/python.h"
#include "kiln/python.h"
#include "symbols/image.h"
#include "util/util.h"

#define PY_MAX_THREADS 100000
#define PY_MAX_STR 1024      /* characters of a name or file kept */
#define PY_MAX_TABLE (1u << 20)
#define PY_CODE_CACHE 4096

struct pycode {
	uint64_t addr;
	uint64_t name_p, qual_p, file_p, table_p; /* what it held when read */
	int32_t firstlineno;
	char *qualname, *file;
	unsigned char *table;
	size_t ntable;
	size_t held;    /* bytes counted in py_held for it */
	bool transient; /* its location table was not kept (the budget): read at each use */
};

struct pyproc {
	pid_t pid;
	struct kiln_py_offsets o;
	char version[16];
	uint64_t runtime, code_type;
	uint64_t eval_lo, eval_hi;
	uint64_t init_shim; /* 3.13+ _Py_InitCleanup: a frame run between a class call and its
			     * __init__, named "__init__" in a file "__init__": never shown */
	struct u64map tstates; /* native tid -> PyThreadState address */
	uint64_t last_scan;    /* when the thread list was last read (CLOCK_MONOTONIC ns) */
	bool cyclic_threads;   /* the thread list came back on itself */
	struct pycode *codes;  /* a direct-mapped cache by address */
	/* names the shim sent (ring.h PYCODE), by address: they outlive the object */
	struct u64map defs;    /* code address -> index + 1 in defv */
	struct pycode *defv;
	size_t ndefs, cdefs;
};

/* Names and location tables held for every Python process of the
 * recording together, counted in bytes really held (what a program can
 * make the recorder keep: 6,000 code objects sharing a 1 MiB table must not
 * cost 6 GB). Past it, a table is read at each use and not kept, and the
 * names the shim sends are read from the process instead. */
#define PY_HELD_MAX ((size_t)256 << 20)
static size_t py_held;

size_t python__held(void)
{
	return __atomic_load_n(&py_held, __ATOMIC_RELAXED);
}

static size_t held_of(const struct pycode *c)
{
	return (c->qualname ? strlen(c->qualname) + 1 : 0) + (c->file ? strlen(c->file) + 1 : 0) + c->ntable +
	       sizeof(*c);
}

static bool held_fits(size_t n)
{
	return __atomic_load_n(&py_held, __ATOMIC_RELAXED) + n <= PY_HELD_MAX;
}

static void held_add(struct pycode *c)
{
	c->held = held_of(c);
	__atomic_add_fetch(&py_held, c->held, __ATOMIC_RELAXED);
}

static bool rd(pid_t pid, uint64_t addr, void *out, size_t n)
{
	if (!addr || addr + n < addr || addr >= KILN_PY_ADDR_MASK)
		return false;
	struct iovec l = {out, n}, r = {(void *)(uintptr_t)addr, n};
	return process_vm_readv(pid, &l, 1, &r, 1, 0) == (ssize_t)n;
}

static bool rd64(pid_t pid, uint64_t addr, uint64_t *v)
{
	return rd(pid, addr, v, sizeof(*v));
}

struct pyproc *pyproc__detect(const struct image *img, uint64_t bias, pid_t pid, char *why, size_t n)
{
	uint64_t rt, rtsz, ev, evsz, ct, ctsz, ver, versz;
	why[0] = 0;
	if (image__find_symbol(img, "_PyRuntime", &rt, &rtsz) < 0)
		return NULL;
	uint32_t hex = 0;
	if (image__find_symbol(img, "Py_Version", &ver, &versz) < 0 || image__read(img, ver, &hex, 4) < 0) {
		snprintf(why, n, "a Python older than 3.11 (no Py_Version in %s): native frames only",
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
	struct pyproc *pp = xcalloc(1, sizeof(*pp));
	pp->pid = pid;
	pp->o = *t;
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
	uint64_t sh, shsz;
	if (t->version >= 0x30d && image__find_symbol(img, "_Py_InitCleanup", &sh, &shsz) == 0)
		pp->init_shim = sh + bias;
	u64map__init(&pp->tstates);
	u64map__init(&pp->defs);
	pp->codes = xcalloc(PY_CODE_CACHE, sizeof(*pp->codes));
	return pp;
}

static void code_release(struct pycode *c)
{
	__atomic_sub_fetch(&py_held, c->held, __ATOMIC_RELAXED);
	free(c->qualname);
	free(c->file);
	free(c->table);
	memset(c, 0, sizeof(*c));
}

void pyproc__free(struct pyproc *pp)
{
	if (!pp)
		return;
	for (size_t i = 0; i < PY_CODE_CACHE; i++)
		code_release(&pp->codes[i]);
	free(pp->codes);
	for (size_t i = 0; i < pp->ndefs; i++)
		code_release(&pp->defv[i]);
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
			if (!rd64(pp->pid, ts + o->ts_native_tid, &tid))
				break;
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
		if (e && rd64(pp->pid, e->v1 + pp->o.ts_native_tid, &got) && got == (uint64_t)tid)
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

static char *read_str(struct pyproc *pp, uint64_t addr);

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
	return read_str(pp, addr);
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

/* len characters of kind bytes each (1 Latin-1, 2 UCS-2, 4 UCS-4), as
 * CPython holds a str, into UTF-8 (surrogates and values past U+10FFFF
 * replaced). malloc'ed. */
static char *utf8_of(const unsigned char *raw, size_t len, unsigned kind)
{
	char *s = xmalloc(len * 4 + 1);
	size_t k = 0;
	for (size_t i = 0; i < len; i++) {
		uint32_t ch = kind == 1 ? raw[i] : kind == 2 ? (uint32_t)(raw[2 * i] | raw[2 * i + 1] << 8)
				      : (uint32_t)(raw[4 * i] | raw[4 * i + 1] << 8 | raw[4 * i + 2] << 16 | (uint32_t)raw[4 * i + 3] << 24);
		if ((ch >= 0xd800 && ch < 0xe000) || ch >= 0x110000)
			ch = 0xfffd;
		if (ch < 0x80) {
			s[k++] = (char)ch;
		} else if (ch < 0x800) {
			s[k++] = (char)(0xc0 | ch >> 6);
			s[k++] = (char)(0x80 | (ch & 0x3f));
		} else if (ch < 0x10000) {
			s[k++] = (char)(0xe0 | ch >> 12);
			s[k++] = (char)(0x80 | ((ch >> 6) & 0x3f));
			s[k++] = (char)(0x80 | (ch & 0x3f));
		} else {
			s[k++] = (char)(0xf0 | ch >> 18);
			s[k++] = (char)(0x80 | ((ch >> 12) & 0x3f));
			s[k++] = (char)(0x80 | ((ch >> 6) & 0x3f));
			s[k++] = (char)(0x80 | (ch & 0x3f));
		}
	}
	s[k] = 0;
	return s;
}

/* A str object as UTF-8 (compact strings only), at most PY_MAX_STR characters. */
static char *read_str(struct pyproc *pp, uint64_t addr)
{
	const struct kiln_py_offsets *o = &pp->o;
	unsigned char h[96];
	if (o->str_compact_size > sizeof(h) || !rd(pp->pid, addr, h, o->str_compact_size))
		return NULL;
	int64_t len;
	uint32_t st;
	unsigned kind = 0;
	memcpy(&len, h + o->str_length, 8);
	memcpy(&st, h + o->str_state, 4);
	unsigned at = kiln_py_str_data(st, o, &kind);
	if (len < 0 || !at)
		return NULL;
	if (len > PY_MAX_STR)
		len = PY_MAX_STR;
	size_t nb = (size_t)len * kind;
	unsigned char *raw = xmalloc(nb + 1);
	uint64_t data = addr + at;
	if (nb && !rd(pp->pid, data, raw, nb)) {
		free(raw);
		return NULL;
	}
	char *s = utf8_of(raw, (size_t)len, kind);
	free(raw);
	return s;
}

static unsigned char *read_bytes(struct pyproc *pp, uint64_t addr, size_t *n)
{
	int64_t len;
	if (!rd(pp->pid, addr + pp->o.bytes_size, &len, 8) || len < 0 || len > PY_MAX_TABLE)
		return NULL;
	unsigned char *b = xmalloc((size_t)len + 1);
	if (len && !rd(pp->pid, addr + pp->o.bytes_sval, b, (size_t)len)) {
		free(b);
		return NULL;
	}
	*n = (size_t)len;
	return b;
}

static bool varint(const unsigned char *t, size_t n, size_t *i, uint32_t *out);

/* A signed varint (sign in the lowest bit), as line deltas are written. */
static bool svarint(const unsigned char *t, size_t n, size_t *i, int *out)
{
	uint32_t v;
	if (!varint(t, n, i, &v))
		return false;
	*out = (v & 1) ? -(int)(v >> 1) : (int)(v >> 1);
	return true;
}

static bool varint(const unsigned char *t, size_t n, size_t *i, uint32_t *out)
{
	uint32_t v = 0;
	unsigned shift = 0;
	for (;;) {
		if (*i >= n || shift > 28)
			return false;
		unsigned char b = t[(*i)++];
		v |= (uint32_t)(b & 63) << shift;
		if (!(b & 64))
			break;
		shift += 6;
	}
	*out = v;
	return true;
}

int python__line(const unsigned char *t, size_t n, int firstlineno, uint32_t lasti)
{
	int line = firstlineno;
	uint64_t addr = 0;
	size_t i = 0;
	while (i < n) {
		unsigned char b = t[i++];
		if (!(b & 0x80))
			return -1; /* not the start of an entry: not a 3.11+ table */
		unsigned code = (b >> 3) & 15, len = (b & 7) + 1u;
		int delta = 0;
		bool none = false;
		uint32_t v;
		switch (code) {
		case 15:
			none = true;
			break;
		case 14: /* a line delta, an end line, two columns */
			if (!svarint(t, n, &i, &delta))
				return -1;
			for (int k = 0; k < 3; k++)
				if (!varint(t, n, &i, &v))
					return -1;
			break;
		case 13: /* a line delta, no columns */
			if (!svarint(t, n, &i, &delta))
				return -1;
			break;
		case 10:
		case 11:
		case 12:
			delta = (int)code - 10;
			i += 2;
			break;
		default:
			i += 1;
			break;
		}
		line += delta;
		if (lasti < addr + len)
			return none ? -1 : line;
		addr += len;
	}
	return -1;
}

int pyproc__define(struct pyproc *pp, uint64_t code, int32_t first, const unsigned char *qual, size_t qlen,
		   unsigned qkind, const unsigned char *file, size_t flen, unsigned fkind, const unsigned char *table,
		   size_t tlen)
{
	if ((qkind != 1 && qkind != 2 && qkind != 4) || (fkind != 1 && fkind != 2 && fkind != 4) || !qlen ||
	    qlen > PY_MAX_STR || flen > PY_MAX_STR || tlen > PY_MAX_TABLE)
		return -EINVAL;
	size_t cost = qlen * 4 + flen * 4 + tlen + sizeof(struct pycode); /* at most, as UTF-8 */
	if (!held_fits(cost))
		return -ENOSPC; /* the object is read from the process instead */
	bool created;
	int replaced = 0;
	struct u64map_ent *e = u64map__upsert(&pp->defs, code, &created);
	struct pycode *c;
	if (created) {
		ARR_GROW(pp->defv, pp->cdefs, pp->ndefs + 1);
		e->v1 = pp->ndefs + 1;
		c = &pp->defv[pp->ndefs++];
		memset(c, 0, sizeof(*c));
	} else {
		c = &pp->defv[e->v1 - 1];
		code_release(c);
		replaced = 1;
	}
	c->addr = code;
	c->firstlineno = first;
	c->qualname = utf8_of(qual, qlen, qkind);
	c->file = utf8_of(file, flen, fkind);
	c->table = tlen ? xmemdup(table, tlen) : NULL;
	c->ntable = tlen;
	held_add(c);
	return replaced;
}

bool pyproc__name(struct pyproc *pp, const struct pyframe *f, const char **func, const char **file, uint32_t *line,
		  uint32_t *def_line)
{
	const struct kiln_py_offsets *o = &pp->o;
	uint64_t code = f->code;
	uint32_t lasti = f->lasti;
	struct u64map_ent *d = f->has_first ? u64map__find(&pp->defs, code) : NULL;
	if (d && pp->defv[d->v1 - 1].firstlineno == f->first) {
		/* the names the shim sent while the object lived */
		const struct pycode *c = &pp->defv[d->v1 - 1];
		int l = c->table ? python__line(c->table, c->ntable, c->firstlineno, lasti) : -1;
		*func = c->qualname;
		*file = c->file;
		*line = (uint32_t)(l > 0 ? l : c->firstlineno > 0 ? c->firstlineno : 0);
		*def_line = (uint32_t)(c->firstlineno > 0 ? c->firstlineno : 0);
		return true;
	}
	unsigned char h[256];
	if (!code || o->co_size > sizeof(h) || !rd(pp->pid, code, h, o->co_size))
		return false;
	uint64_t type, name_p, qual_p, file_p, table_p;
	int32_t first;
	memcpy(&type, h + 8, 8);
	memcpy(&name_p, h + o->co_name, 8);
	memcpy(&qual_p, h + o->co_qualname, 8);
	memcpy(&file_p, h + o->co_filename, 8);
	memcpy(&table_p, h + o->co_linetable, 8);
	memcpy(&first, h + o->co_firstlineno, 4);
	if (type != pp->code_type || (f->has_first && first != f->first))
		return false;
	struct pycode *c = &pp->codes[hash_u64(code) & (PY_CODE_CACHE - 1)];
	if (c->addr != code || c->name_p != name_p || c->qual_p != qual_p || c->file_p != file_p ||
	    c->table_p != table_p || c->firstlineno != first) {
		code_release(c);
		c->qualname = read_str(pp, qual_p);
		if (!c->qualname)
			c->qualname = read_str(pp, name_p);
		c->file = read_str(pp, file_p);
		c->table = read_bytes(pp, table_p, &c->ntable);
		if (!c->qualname) {
			code_release(c);
			return false;
		}
		if (!c->file)
			c->file = xstrdup("");
		if (o->version >= 0x30d && !pp->init_shim && !strcmp(c->qualname, "__init__") &&
		    !strcmp(c->file, "__init__") && !c->ntable)
			pp->init_shim = code; /* _Py_InitCleanup, known by what it holds */
		c->addr = code;
		c->name_p = name_p;
		c->qual_p = qual_p;
		c->file_p = file_p;
		c->table_p = table_p;
		c->firstlineno = first;
		if (!held_fits(held_of(c))) {
			free(c->table);
			c->table = NULL;
			c->ntable = 0;
			c->transient = table_p != 0;
		}
		held_add(c);
	}
	int l;
	if (c->transient) { /* over the budget: read, used, let go */
		size_t nt = 0;
		unsigned char *t = read_bytes(pp, table_p, &nt);
		l = t ? python__line(t, nt, first, lasti) : -1;
		free(t);
	} else {
		l = c->table ? python__line(c->table, c->ntable, first, lasti) : -1;
	}
	*func = c->qualname;
	*file = c->file;
	*line = (uint32_t)(l > 0 ? l : first > 0 ? first : 0);
	*def_line = (uint32_t)(first > 0 ? first : 0);
	return true;
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
		after_eval = false;
		if (k == max)
			return -1;
		order[k++] = i;
	}
	if (next < npy && !truncated)
		return -1;
	return k;
}
