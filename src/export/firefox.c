/* The Firefox Profiler's processed profile format (preprocessedProfileVersion
 * 48; the profiler upgrades it to its current one on load, as it does for
 * every saved profile). One thread per (pid, tid) with its stacks as the
 * stack/frame/func tables and string array the format defines, and the
 * timeline (collect/timeline.h) as a "Memory" counter per process (live
 * heap) and an "RSS" one.
 *
 * Samples are placed in time by the profile's time windows (WINDOW
 * records): for cpu, wall and alloc_*, each window's count of a stack is
 * one sample at the window's end, weighted by it, so the profiler's track
 * and its own range selection show when each stack ran (to a window's
 * length: 20 ms at first). A profile without windows (or another metric)
 * has a thread's samples as its stacks, weighted by their value, all at
 * the time the thread's process started.
 *
 * With a heap, each thread also has the format's native allocations (the
 * balanced table: addresses and thread ids), so the profiler's allocation,
 * deallocation and retained-memory views work. kiln keeps blocks by stack,
 * not one by one: each stack that allocated is two allocations at two
 * addresses of its own (synthetic, never a block's), what was freed
 * (allocated bytes less leaked) followed by its deallocation, and what
 * leaked (never deallocated: the retained memory). A deallocation sits on
 * the stack that allocated the block: kiln does not record where blocks
 * are freed. */
#include <stdarg.h>
#include <string.h>
#include <jansson.h>
#include "export/export.h"
#include "stream/format.h"

#define FF_VERSION 48
enum { CAT_OTHER, CAT_NATIVE, CAT_PYTHON, CAT_KERNEL };

struct ffthread {
	uint32_t pid, tid;
	struct intern strs, funcs, frames, stacks;
	json_t *str, *f_name, *f_file, *fr_func, *fr_line, *fr_cat, *st_frame, *st_prefix, *st_cat;
	json_t *s_stack, *s_time, *s_weight;
	json_t *a_time, *a_weight, *a_stack, *a_addr, *a_tid; /* native allocations */
};

static json_t *column(size_t n, json_t *v)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append(a, v);
	json_decref(v);
	return a;
}

static void thread_init(struct ffthread *t, uint32_t pid, uint32_t tid)
{
	memset(t, 0, sizeof(*t));
	t->pid = pid;
	t->tid = tid;
	intern__init(&t->strs);
	intern__init(&t->funcs);
	intern__init(&t->frames);
	intern__init(&t->stacks);
	t->str = json_array();
	t->f_name = json_array();
	t->f_file = json_array();
	t->fr_func = json_array();
	t->fr_line = json_array();
	t->fr_cat = json_array();
	t->st_frame = json_array();
	t->st_prefix = json_array();
	t->st_cat = json_array();
	t->s_stack = json_array();
	t->s_time = json_array();
	t->s_weight = json_array();
	t->a_time = json_array();
	t->a_weight = json_array();
	t->a_stack = json_array();
	t->a_addr = json_array();
	t->a_tid = json_array();
}

/* One native allocation (or, bytes < 0, deallocation) of t. */
static void native_alloc(struct ffthread *t, double ms, int64_t bytes, json_int_t st, json_int_t addr)
{
	json_array_append_new(t->a_time, json_real(ms));
	json_array_append_new(t->a_weight, json_integer(bytes));
	json_array_append_new(t->a_stack, st < 0 ? json_null() : json_integer(st));
	json_array_append_new(t->a_addr, json_integer(addr));
	json_array_append_new(t->a_tid, json_integer(t->tid));
}

static uint32_t str_id(struct ffthread *t, const char *s)
{
	bool added;
	uint32_t id = intern__put(&t->strs, s, strlen(s), &added);
	if (added)
		json_array_append_new(t->str, json_string(s));
	return id;
}

static int frame_category(const struct pframe *f)
{
	switch (f->kind) {
	case FK_PYTHON: return CAT_PYTHON;
	case FK_KERNEL: return CAT_KERNEL;
	case FK_MARKER: return CAT_OTHER;
	default: return CAT_NATIVE;
	}
}

/* The stack node for frames fr[0..n) (root first), made as needed. */
static json_int_t stack_of(const struct profile *p, struct ffthread *t, const struct pframe **fr, size_t n)
{
	json_int_t prefix = -1;
	for (size_t i = 0; i < n; i++) {
		const char *file = profile__str(p, fr[i]->file);
		uint32_t name = str_id(t, profile__str(p, fr[i]->name));
		uint32_t fkey[2] = {name, *file ? str_id(t, file) + 1 : 0};
		bool added;
		uint32_t func = intern__put(&t->funcs, fkey, sizeof(fkey), &added);
		if (added) {
			json_array_append_new(t->f_name, json_integer(name));
			json_array_append_new(t->f_file, fkey[1] ? json_integer(fkey[1] - 1) : json_null());
		}
		int cat = frame_category(fr[i]);
		uint32_t frkey[3] = {func, fr[i]->line, (uint32_t)cat};
		uint32_t frame = intern__put(&t->frames, frkey, sizeof(frkey), &added);
		if (added) {
			json_array_append_new(t->fr_func, json_integer(func));
			json_array_append_new(t->fr_line, fr[i]->line ? json_integer(fr[i]->line) : json_null());
			json_array_append_new(t->fr_cat, json_integer(cat));
		}
		int64_t skey[2] = {prefix, frame};
		uint32_t st = intern__put(&t->stacks, skey, sizeof(skey), &added);
		if (added) {
			json_array_append_new(t->st_frame, json_integer(frame));
			json_array_append_new(t->st_prefix, prefix < 0 ? json_null() : json_integer(prefix));
			json_array_append_new(t->st_cat, json_integer(cat));
		}
		prefix = st;
	}
	return prefix;
}

static json_t *table(const char *k1, json_t *v1, ...)
{
	json_t *o = json_object();
	va_list ap;
	va_start(ap, v1);
	size_t len = json_array_size(v1);
	for (const char *k = k1; k; k = va_arg(ap, const char *)) {
		json_t *v = k == k1 ? v1 : va_arg(ap, json_t *);
		json_object_set_new(o, k, v);
	}
	va_end(ap);
	json_object_set_new(o, "length", json_integer((json_int_t)len));
	return o;
}

static json_t *thread_json(const struct profile *p, struct ffthread *t, double start_ms, bool bytes)
{
	const struct pthread *th = profile__thread(p, t->pid, t->tid);
	const struct pprocess *pr = profile__process(p, t->pid);
	char pid[16];
	snprintf(pid, sizeof(pid), "%u", t->pid);
	json_t *o = json_object();
	json_object_set_new(o, "processType", json_string("default"));
	json_object_set_new(o, "processName", json_string(profile__process_name(p, t->pid)));
	json_object_set_new(o, "processStartupTime", json_real(start_ms));
	json_object_set_new(o, "processShutdownTime",
			    pr && pr->exited && pr->end_ns > p->start_ns ? json_real((double)(pr->end_ns - p->start_ns) / 1e6)
									 : json_null());
	json_object_set_new(o, "registerTime", json_real(start_ms));
	json_object_set_new(o, "unregisterTime", json_null());
	json_object_set_new(o, "pausedRanges", json_array());
	json_object_set_new(o, "name", json_string(th && th->name && *th->name ? th->name : "thread"));
	json_object_set_new(o, "isMainThread", json_boolean(t->pid == t->tid));
	json_object_set_new(o, "pid", json_string(pid));
	json_object_set_new(o, "tid", json_integer(t->tid));
	size_t nf = json_array_size(t->fr_func), nfn = json_array_size(t->f_name);
	json_t *samples = table("stack", t->s_stack, "time", t->s_time, "weight", t->s_weight, NULL);
	json_object_set_new(samples, "weightType", json_string(bytes ? "bytes" : "samples"));
	json_object_set_new(o, "samples", samples);
	if (json_array_size(t->a_time)) {
		json_t *na = table("time", t->a_time, "weight", t->a_weight, "stack", t->a_stack, "memoryAddress",
				   t->a_addr, "threadId", t->a_tid, NULL);
		json_object_set_new(na, "weightType", json_string("bytes"));
		json_object_set_new(o, "nativeAllocations", na);
	} else {
		json_decref(t->a_time);
		json_decref(t->a_weight);
		json_decref(t->a_stack);
		json_decref(t->a_addr);
		json_decref(t->a_tid);
	}
	json_object_set_new(o, "markers",
			    table("data", json_array(), "name", json_array(), "startTime", json_array(), "endTime",
				  json_array(), "phase", json_array(), "category", json_array(), NULL));
	json_object_set_new(o, "stackTable",
			    table("frame", t->st_frame, "prefix", t->st_prefix, "category", t->st_cat, "subcategory",
				  column(json_array_size(t->st_frame), json_integer(0)), NULL));
	json_object_set_new(o, "frameTable",
			    table("func", t->fr_func, "address", column(nf, json_integer(-1)), "inlineDepth",
				  column(nf, json_integer(0)), "category", t->fr_cat, "subcategory",
				  column(nf, json_integer(0)), "nativeSymbol", column(nf, json_null()), "innerWindowID",
				  column(nf, json_integer(0)), "implementation", column(nf, json_null()), "line",
				  t->fr_line, "column", column(nf, json_null()), NULL));
	json_object_set_new(o, "funcTable",
			    table("name", t->f_name, "isJS", column(nfn, json_false()), "relevantForJS",
				  column(nfn, json_false()), "resource", column(nfn, json_integer(-1)), "fileName",
				  t->f_file, "lineNumber", column(nfn, json_null()), "columnNumber",
				  column(nfn, json_null()), NULL));
	json_object_set_new(o, "resourceTable",
			    table("lib", json_array(), "name", json_array(), "host", json_array(), "type", json_array(),
				  NULL));
	json_object_set_new(o, "nativeSymbols",
			    table("libIndex", json_array(), "address", json_array(), "name", json_array(),
				  "functionSize", json_array(), NULL));
	json_object_set_new(o, "stringArray", t->str);
	intern__release(&t->strs);
	intern__release(&t->funcs);
	intern__release(&t->frames);
	intern__release(&t->stacks);
	return o;
}

/* A counter of one process's points: counts are changes from the point
 * before (the format's memory counters add them up). */
static json_t *counter(const struct profile *p, uint32_t pid, bool rss, json_int_t main_thread)
{
	json_t *time = json_array(), *count = json_array();
	int64_t last = 0;
	for (size_t i = 0; i < p->npoints; i++) {
		const struct ppoint *pt = &p->points[i];
		if (pt->pid != pid || (rss ? pt->rss == TIMELINE_NO_RSS : pt->heap == TIMELINE_NO_HEAP))
			continue;
		int64_t v = rss ? (int64_t)pt->rss : pt->heap;
		double ms = pt->t_ns > p->start_ns ? (double)(pt->t_ns - p->start_ns) / 1e6 : 0;
		json_array_append_new(time, json_real(ms));
		json_array_append_new(count, json_integer(v - last));
		last = v;
	}
	if (!json_array_size(time)) {
		json_decref(time);
		json_decref(count);
		return NULL;
	}
	char pids[16];
	snprintf(pids, sizeof(pids), "%u", pid);
	json_t *c = json_object();
	json_object_set_new(c, "name", json_string(rss ? "RSS" : "Memory"));
	json_object_set_new(c, "category", json_string("Memory"));
	json_object_set_new(c, "description",
			    json_string(rss ? "resident set size (kiln timeline)"
					    : "live heap: the most bytes live since the point before (kiln timeline)"));
	json_object_set_new(c, "pid", json_string(pids));
	json_object_set_new(c, "mainThreadIndex", json_integer(main_thread));
	json_object_set_new(c, "samples", table("time", time, "count", count, NULL));
	return c;
}

static json_t *category(const char *name, const char *color)
{
	json_t *subs = json_array();
	json_array_append_new(subs, json_string("Other"));
	return json_pack("{s:s, s:s, s:o}", "name", name, "color", color, "subcategories", subs);
}

/* Samples placed in time by the windows: a cell's thread and stack. */
struct timed_samples {
	struct ffthread *th;
	const size_t *cell_thr; /* SIZE_MAX: no samples of this cell */
	const json_int_t *cell_st;
};

static void timed_sample(void *arg, uint32_t cell, double end, int64_t delta)
{
	const struct timed_samples *ts = arg;
	if (ts->cell_thr[cell] == SIZE_MAX || delta <= 0)
		return;
	struct ffthread *t = &ts->th[ts->cell_thr[cell]];
	json_array_append_new(t->s_stack, ts->cell_st[cell] < 0 ? json_null() : json_integer(ts->cell_st[cell]));
	json_array_append_new(t->s_time, json_real(end * 1e3));
	json_array_append_new(t->s_weight, json_integer(delta));
}

int export__firefox(FILE *f, const struct profile *p, const struct view_filter *vf)
{
	struct ffthread *th = NULL;
	size_t nth = 0, cth = 0;
	struct u64map idx;
	u64map__init(&idx);
	bool bytes = kiln_metric__is_bytes(vf->metric);
	const struct pframe *fr[PROFILE_MAX_FRAMES];
	struct view_filter heapf = *vf;
	heapf.metric = KM_ALLOC_BYTES;
	json_int_t addr = 0;
	/* samples in time (the windows), where the metric has them */
	bool timed = profile__windows_whole(p, vf->metric);
	size_t *cell_thr = timed ? xmalloc((p->ncells + 1) * sizeof(*cell_thr)) : NULL;
	json_int_t *cell_st = timed ? xmalloc((p->ncells + 1) * sizeof(*cell_st)) : NULL;
	for (size_t ci = 0; timed && ci < p->ncells; ci++)
		cell_thr[ci] = SIZE_MAX; /* no samples of this cell */
	for (size_t ci = 0; ci < p->ncells; ci++) {
		const struct pcell *c = &p->cells[ci];
		bool sample = view__cell_selected(c, vf) && c->v[vf->metric] > 0;
		bool heap = view__cell_selected(c, &heapf) && c->v[KM_ALLOC_BYTES] > 0;
		if (!sample && !heap)
			continue;
		bool added;
		struct u64map_ent *e = u64map__upsert(&idx, (uint64_t)c->pid << 32 | c->tid, &added);
		if (added) {
			ARR_GROW(th, cth, nth + 1);
			thread_init(&th[nth], c->pid, c->tid);
			e->v1 = nth++;
		}
		struct ffthread *t = &th[e->v1];
		size_t n = profile__stack_frames(p, c->stack, fr, PROFILE_MAX_FRAMES);
		json_int_t st = stack_of(p, t, fr, n);
		const struct pprocess *pr = profile__process(p, c->pid);
		double ms = pr && pr->start_ns > p->start_ns ? (double)(pr->start_ns - p->start_ns) / 1e6 : 0;
		if (timed) {
			cell_thr[ci] = sample ? (size_t)e->v1 : SIZE_MAX;
			cell_st[ci] = st;
		} else if (sample) {
			json_array_append_new(t->s_stack, st < 0 ? json_null() : json_integer(st));
			json_array_append_new(t->s_time, json_real(ms));
			json_array_append_new(t->s_weight, json_integer(c->v[vf->metric]));
		}
		if (heap) {
			int64_t leaked = c->v[KM_LEAK_BYTES] > 0 ? c->v[KM_LEAK_BYTES] : 0;
			int64_t freed = c->v[KM_ALLOC_BYTES] > leaked ? c->v[KM_ALLOC_BYTES] - leaked : 0;
			if (freed) {
				native_alloc(t, ms, freed, st, ++addr);
				native_alloc(t, ms, -freed, st, addr);
			}
			if (leaked)
				native_alloc(t, ms, leaked, st, ++addr);
		}
	}
	if (timed) {
		struct timed_samples ts = {th, cell_thr, cell_st};
		profile__window_each(p, vf->metric, timed_sample, &ts);
		free(cell_thr);
		free(cell_st);
	}
	/* a process with a timeline and no stacks still gets a thread: counters name one */
	for (size_t i = 0; i < p->npoints; i++) {
		uint32_t pid = p->points[i].pid;
		if (!pid || (vf->pid >= 0 && pid != (uint32_t)vf->pid))
			continue;
		bool added;
		struct u64map_ent *e = u64map__upsert(&idx, (uint64_t)pid << 32 | pid, &added);
		if (added) {
			ARR_GROW(th, cth, nth + 1);
			thread_init(&th[nth], pid, pid);
			e->v1 = nth++;
		}
	}
	json_t *threads = json_array(), *counters = json_array();
	for (size_t i = 0; i < nth; i++) {
		const struct pprocess *pr = profile__process(p, th[i].pid);
		double ms = pr && pr->start_ns > p->start_ns ? (double)(pr->start_ns - p->start_ns) / 1e6 : 0;
		json_array_append_new(threads, thread_json(p, &th[i], ms, bytes));
	}
	for (size_t i = 0; i < nth; i++) {
		if (th[i].pid != th[i].tid)
			continue;
		for (int rss = 0; rss < 2; rss++) {
			json_t *c = counter(p, th[i].pid, rss, (json_int_t)i);
			if (c)
				json_array_append_new(counters, c);
		}
	}
	json_t *fq = json_object_get(p->meta, "frequency");
	double hz = json_is_integer(fq) && json_integer_value(fq) > 0 ? (double)json_integer_value(fq) : 1000;
	json_t *cats = json_array();
	json_array_append_new(cats, category("Other", "grey"));
	json_array_append_new(cats, category("Native", "blue"));
	json_array_append_new(cats, category("Python", "purple"));
	json_array_append_new(cats, category("Kernel", "orange"));
	char product[600], est[80];
	snprintf(product, sizeof(product), "kiln: %s%s", p->program ? p->program : "profile",
		 export__estimated(p, KM_LIVE_BYTES, est, sizeof(est)));
	json_t *meta = json_object();
	json_object_set_new(meta, "interval", json_real(1000.0 / hz));
	json_object_set_new(meta, "startTime", json_real((double)p->start_ns / 1e6));
	json_object_set_new(meta, "processType", json_integer(0));
	json_object_set_new(meta, "product", json_string(product));
	json_object_set_new(meta, "stackwalk", json_integer(1));
	json_object_set_new(meta, "version", json_integer(27));
	json_object_set_new(meta, "preprocessedProfileVersion", json_integer(FF_VERSION));
	json_object_set_new(meta, "platform", json_string("Linux"));
	json_object_set_new(meta, "oscpu", json_string("Linux"));
	json_object_set_new(meta, "symbolicated", json_true());
	json_object_set_new(meta, "categories", cats);
	json_object_set_new(meta, "markerSchema", json_array());
	json_object_set_new(meta, "abi", json_string(""));
	json_object_set_new(meta, "misc", json_string(""));
	json_object_set_new(meta, "toolkit", json_string(""));
	json_t *root = json_object();
	json_object_set_new(root, "meta", meta);
	json_object_set_new(root, "libs", json_array());
	json_object_set_new(root, "pages", json_array());
	json_object_set_new(root, "threads", threads);
	json_object_set_new(root, "counters", counters);
	int rc = json_dumpf(root, f, JSON_COMPACT) == 0 ? 0 : -1;
	fputc('\n', f);
	json_decref(root);
	free(th);
	u64map__release(&idx);
	return rc;
}
