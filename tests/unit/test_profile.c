/* The stream framing and the profile reader with its views, on profiles
 * written record by record: what a table counts (a recursive frame once per
 * stack), folded lines, markers, tail-call frames, diffs, and what the
 * reader refuses. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "aggregate/profile.h"
#include "aggregate/view.h"
#include "export/export.h"
#include "stream/records.h"
#include "stream/stream.h"

struct fixture {
	char path[64];
	struct stream_writer *w;
	struct buf b;
};

static void fx_open(struct fixture *f, const char *meta)
{
	snprintf(f->path, sizeof(f->path), "/tmp/kiln-unit-%d-XXXXXX", (int)getpid());
	int fd = mkstemp(f->path);
	close(fd);
	f->w = stream_writer__open(f->path);
	cr_assert_not_null(f->w);
	buf__init(&f->b);
	stream_writer__record(f->w, REC_META, meta, strlen(meta));
	stream_writer__flush(f->w); /* its own compressed block, as the recorder's first flush */
}

static void fx_module(struct fixture *f, uint32_t id, const char *path)
{
	f->b.len = 0;
	rec_module__encode(&f->b, id, MOD_FILE, 0, path, "abcd");
	stream_writer__record(f->w, REC_MODULE, f->b.data, f->b.len);
}

/* a location with one frame (or an inlined pair, or a tail chain) */
static void fx_loc(struct fixture *f, uint32_t id, uint32_t module, const char *func, const char *file, uint32_t line,
		   const char *inlined_into, const char *tail)
{
	f->b.len = 0;
	rec_loc__encode(&f->b, &(struct rec_loc){.id = id, .module = module, .addr = 0x1000 + id * 16, .flags = LOC_RETADDR});
	stream_writer__record(f->w, REC_LOC, f->b.data, f->b.len);
	f->b.len = 0;
	rec_sym__begin(&f->b, id, (uint16_t)(1 + !!inlined_into + !!tail));
	if (tail)
		rec_sym__frame(&f->b, tail, "", 0, 2);
	rec_sym__frame(&f->b, func, file, line, inlined_into ? 1 : 0);
	if (inlined_into)
		rec_sym__frame(&f->b, inlined_into, file, line + 100, 0);
	stream_writer__record(f->w, REC_SYM, f->b.data, f->b.len);
}

static void fx_stack(struct fixture *f, uint32_t id, uint16_t flags, int n, const uint32_t *locs)
{
	f->b.len = 0;
	rec_stack__encode(&f->b, id, flags, (uint16_t)n, locs);
	stream_writer__record(f->w, REC_STACK, f->b.data, f->b.len);
}

static void fx_count(struct fixture *f, uint32_t pid, uint32_t tid, uint32_t stack, uint8_t metric, int64_t v)
{
	rec_counts__begin(&f->b);
	rec_counts__add(&f->b, &(struct rec_count){pid, tid, stack, metric, v});
	stream_writer__record(f->w, REC_COUNTS, f->b.data, f->b.len);
}

static void fx_end(struct fixture *f, bool end)
{
	if (end) {
		f->b.len = 0;
		rec_end__encode(&f->b, &(struct rec_end){2000000000ull, 30, 0});
		stream_writer__record(f->w, REC_END, f->b.data, f->b.len);
	}
	cr_assert_eq(stream_writer__free(f->w), 0);
	buf__release(&f->b);
}

#define META "{\"kind\":\"profile\",\"program\":\"/bin/prog\",\"start_ns\":1000000000}"

/* main -> rec -> rec -> rec (leaf) with 10 samples; main -> work 20 samples */
static void basic(struct fixture *f, bool end)
{
	fx_open(f, META);
	fx_module(f, 0, "/bin/prog");
	fx_module(f, 1, "/lib/libc.so.6");
	fx_loc(f, 0, 0, "main", "prog.c", 10, NULL, NULL);
	fx_loc(f, 1, 0, "rec", "prog.c", 20, NULL, NULL);
	fx_loc(f, 2, 1, "work", "work.c", 30, NULL, NULL);
	uint32_t s0[] = {1, 1, 1, 0}, s1[] = {2, 0};
	fx_stack(f, 0, 0, 4, s0);
	fx_stack(f, 1, 0, 2, s1);
	fx_count(f, 100, 100, 0, KM_CPU, 7);
	fx_count(f, 100, 100, 0, KM_CPU, 10); /* absolute: replaces 7 */
	fx_count(f, 100, 101, 1, KM_CPU, 20);
	fx_end(f, end);
}

static int64_t row_total(const struct table *t, const char *key, int64_t *self)
{
	int64_t id = intern__get(&t->keys, key, (uint32_t)strlen(key));
	cr_assert_geq(id, 0, "no row %s", key);
	if (self)
		*self = t->rows[id].self;
	return t->rows[id].total;
}

Test(profile, recursion_counts_once_and_self_is_the_leaf)
{
	struct fixture f;
	basic(&f, true);
	struct profile p;
	char err[256];
	cr_assert_eq(profile__load(&p, f.path, err, sizeof(err)), 0, "%s", err);
	cr_assert(p.complete);
	cr_assert_str_eq(p.warning, "");
	struct view_filter vf = {.metric = KM_CPU, .pid = -1, .tid = -1};
	struct table t;
	table__build(&t, &p, &vf, BY_FUNCTION);
	int64_t self;
	cr_assert_eq(t.sum, 30);
	cr_assert_eq(row_total(&t, "main", &self), 30);
	cr_assert_eq(self, 0);
	cr_assert_eq(row_total(&t, "rec", &self), 10, "three rec frames in one stack count once");
	cr_assert_eq(self, 10);
	cr_assert_eq(row_total(&t, "work", &self), 20);
	table__sort(&t, false);
	cr_assert_str_eq(table__key(&t, t.order[0]), "main");
	cr_assert_str_eq(table__key(&t, t.order[1]), "work");
	table__release(&t);
	table__build(&t, &p, &vf, BY_LIB);
	cr_assert_eq(row_total(&t, "libc.so.6", NULL), 20);
	cr_assert_eq(row_total(&t, "prog", NULL), 30);
	table__release(&t);
	table__build(&t, &p, &vf, BY_LINE);
	cr_assert_eq(row_total(&t, "rec (prog.c:20)", NULL), 10);
	table__release(&t);
	vf.tid = 101;
	table__build(&t, &p, &vf, BY_FUNCTION);
	cr_assert_eq(t.sum, 20, "--tid keeps one thread");
	table__release(&t);
	profile__release(&p);
	unlink(f.path);
}

Test(profile, folded_lines)
{
	struct fixture f;
	basic(&f, true);
	struct profile p;
	char err[256];
	cr_assert_eq(profile__load(&p, f.path, err, sizeof(err)), 0);
	struct view_filter vf = {.metric = KM_CPU, .pid = -1, .tid = -1};
	char *out = NULL;
	size_t n = 0;
	FILE *m = open_memstream(&out, &n);
	export__folded(m, &p, &vf);
	fclose(m);
	cr_assert_str_eq(out, "main;rec;rec;rec 10\nmain;work 20\n");
	free(out);
	profile__release(&p);
	unlink(f.path);
}

Test(profile, several_processes_and_threads_get_frames_of_their_own)
{
	struct fixture f;
	fx_open(&f, META);
	fx_module(&f, 0, "/bin/prog");
	fx_loc(&f, 0, 0, "main", "prog.c", 10, NULL, NULL);
	uint32_t s0[] = {0};
	fx_stack(&f, 0, 0, 1, s0);
	f.b.len = 0;
	rec_process__encode(&f.b, 7, 1, 0, "prog", "/bin/prog");
	stream_writer__record(f.w, REC_PROCESS, f.b.data, f.b.len);
	f.b.len = 0;
	rec_thread__encode(&f.b, 7, 8, "worker;x");
	stream_writer__record(f.w, REC_THREAD, f.b.data, f.b.len);
	fx_count(&f, 7, 8, 0, KM_CPU, 3);
	fx_count(&f, 9, 9, 0, KM_CPU, 4);
	fx_end(&f, true);
	struct profile p;
	char err[256];
	cr_assert_eq(profile__load(&p, f.path, err, sizeof(err)), 0);
	struct view_filter vf = {.metric = KM_CPU, .pid = -1, .tid = -1, .threads = true};
	char *out = NULL;
	size_t n = 0;
	FILE *m = open_memstream(&out, &n);
	export__folded(m, &p, &vf);
	fclose(m);
	/* a ';' in a thread name must not split a frame */
	cr_assert_str_eq(out, "prog-7;worker:x-8;main 3\nprog-9;thread-9;main 4\n");
	free(out);
	profile__release(&p);
	unlink(f.path);
}

Test(profile, markers_inlined_and_tail_call_frames)
{
	struct fixture f;
	fx_open(&f, META);
	fx_module(&f, 0, "/bin/prog");
	fx_loc(&f, 0, 0, "main", "prog.c", 10, NULL, "path_b");  /* main called path_b, which tail-called on */
	fx_loc(&f, 1, 0, "hot", "prog.c", 20, "outer", NULL);     /* hot inlined into outer */
	fx_loc(&f, 2, 0, "path_b", "prog.c", 30, NULL, NULL);
	uint32_t s0[] = {1, 0}, s1[] = {2, 0}, s2[] = {0};
	fx_stack(&f, 0, STACK_TRUNCATED, 2, s0);
	fx_stack(&f, 1, 0, 2, s1);
	fx_stack(&f, 2, 0, 1, s2);
	fx_count(&f, 1, 1, 0, KM_CPU, 5);
	fx_count(&f, 1, 1, 1, KM_CPU, 6);
	fx_count(&f, 1, 1, 2, KM_ALLOC_COUNT, 9);
	fx_end(&f, true);
	struct profile p;
	char err[256];
	cr_assert_eq(profile__load(&p, f.path, err, sizeof(err)), 0, "%s", err);
	struct view_filter vf = {.metric = KM_CPU, .pid = -1, .tid = -1};
	char *out = NULL;
	size_t n = 0;
	FILE *m = open_memstream(&out, &n);
	export__folded(m, &p, &vf);
	vf.metric = KM_ALLOC_COUNT;
	export__folded(m, &p, &vf);
	fclose(m);
	cr_assert_str_eq(out,
			 "[truncated];main;path_b;outer;hot 5\n" /* the deeper frame is not path_b: chain shown */
			 "main;path_b 6\n"                       /* it is: not shown twice */
			 "main;path_b 9\n");                     /* a heap stack's leaf: chain shown */
	free(out);
	profile__release(&p);
	unlink(f.path);
}

Test(profile, cut_short_loads_with_a_warning)
{
	struct fixture f;
	basic(&f, false);
	struct profile p;
	char err[256];
	cr_assert_eq(profile__load(&p, f.path, err, sizeof(err)), 0);
	cr_assert_not(p.complete);
	cr_assert(strstr(p.warning, "interrupted"), "%s", p.warning);
	profile__release(&p);
	/* cut inside the last record */
	FILE *fp = fopen(f.path, "r+");
	fseek(fp, 0, SEEK_END);
	long len = ftell(fp);
	fclose(fp);
	cr_assert_eq(truncate(f.path, len - 3), 0);
	cr_assert_eq(profile__load(&p, f.path, err, sizeof(err)), 0);
	cr_assert(strstr(p.warning, "cut short"), "%s", p.warning);
	profile__release(&p);
	unlink(f.path);
}

Test(profile, corruption_is_refused_with_a_reason)
{
	struct fixture f;
	basic(&f, true);
	FILE *fp = fopen(f.path, "r+");
	fseek(fp, 40, SEEK_SET);
	int c = fgetc(fp);
	fseek(fp, 40, SEEK_SET);
	fputc(c ^ 0x20, fp);
	fclose(fp);
	struct profile p;
	char err[256] = "";
	cr_assert_eq(profile__load(&p, f.path, err, sizeof(err)), -1);
	cr_assert(strstr(err, "corrupt"), "%s", err);
	profile__release(&p);
	unlink(f.path);
	cr_assert_eq(profile__load_mem(&p, "KILNPROF\x02\0\0\0\x10\0\0\0", 16, err, sizeof(err)), -1);
	cr_assert(strstr(err, "version 2"), "%s", err);
	profile__release(&p);
	cr_assert_eq(profile__load_mem(&p, "hello", 5, err, sizeof(err)), -1);
	cr_assert(strstr(err, "not a kiln profile"), "%s", err);
	profile__release(&p);
}

Test(profile, references_to_undefined_things_are_corrupt)
{
	struct fixture f;
	fx_open(&f, META);
	fx_module(&f, 0, "/bin/prog");
	fx_loc(&f, 0, 0, "main", "prog.c", 10, NULL, NULL);
	uint32_t s0[] = {0, 5}; /* location 5 was never defined */
	fx_stack(&f, 0, 0, 2, s0);
	fx_end(&f, true);
	struct profile p;
	char err[256] = "";
	cr_assert_eq(profile__load(&p, f.path, err, sizeof(err)), -1);
	cr_assert(strstr(err, "stack"), "%s", err);
	profile__release(&p);
	unlink(f.path);
}

Test(view, diff_of_tables_orders_by_change)
{
	struct fixture a, b;
	basic(&a, true);
	fx_open(&b, META);
	fx_module(&b, 0, "/bin/prog");
	fx_module(&b, 1, "/lib/libc.so.6");
	fx_loc(&b, 0, 0, "main", "prog.c", 10, NULL, NULL);
	fx_loc(&b, 1, 0, "rec", "prog.c", 20, NULL, NULL);
	fx_loc(&b, 2, 1, "work", "work.c", 30, NULL, NULL);
	uint32_t s0[] = {1, 0}, s1[] = {2, 0};
	fx_stack(&b, 0, 0, 2, s0);
	fx_stack(&b, 1, 0, 2, s1);
	fx_count(&b, 1, 1, 0, KM_CPU, 40);
	fx_count(&b, 1, 1, 1, KM_CPU, 15);
	fx_end(&b, true);
	struct profile pa, pb;
	char err[256];
	cr_assert_eq(profile__load(&pa, a.path, err, sizeof(err)), 0);
	cr_assert_eq(profile__load(&pb, b.path, err, sizeof(err)), 0);
	struct view_filter vf = {.metric = KM_CPU, .pid = -1, .tid = -1};
	struct table ta, tb;
	table__build(&ta, &pa, &vf, BY_FUNCTION);
	table__build(&tb, &pb, &vf, BY_FUNCTION);
	struct diff d;
	diff__tables(&d, &ta, &tb, true);
	cr_assert_eq(d.base_sum, 30);
	cr_assert_eq(d.new_sum, 55);
	cr_assert_str_eq(d.rows[0].key, "rec");
	cr_assert_eq(d.rows[0].new_ - d.rows[0].base, 30);
	cr_assert_str_eq(d.rows[1].key, "work");
	cr_assert_eq(d.rows[1].new_ - d.rows[1].base, -5);
	diff__release(&d);
	table__release(&ta);
	table__release(&tb);
	profile__release(&pa);
	profile__release(&pb);
	unlink(a.path);
	unlink(b.path);
}

/* pid = tid = 0xffffffff (a valid file can say so): every view, no read out
 * of bounds (the thread index once wrapped to the map's empty key) */
Test(profile, pid_and_tid_at_their_maxima)
{
	struct fixture f;
	fx_open(&f, META);
	fx_module(&f, 0, "/bin/prog");
	fx_loc(&f, 0, 0, "main", "prog.c", 10, NULL, NULL);
	uint32_t s0[] = {0};
	fx_stack(&f, 0, 0, 1, s0);
	f.b.len = 0;
	rec_process__encode(&f.b, UINT32_MAX, 1, 1, "prog", "/bin/prog");
	stream_writer__record(f.w, REC_PROCESS, f.b.data, f.b.len);
	f.b.len = 0;
	rec_thread__encode(&f.b, UINT32_MAX, UINT32_MAX, "worker");
	stream_writer__record(f.w, REC_THREAD, f.b.data, f.b.len);
	fx_count(&f, UINT32_MAX, UINT32_MAX, 0, KM_CPU, 5);
	fx_count(&f, 0, 0, 0, KM_CPU, 3);
	fx_end(&f, true);
	struct profile p;
	char err[256];
	cr_assert_eq(profile__load(&p, f.path, err, sizeof(err)), 0, "%s", err);
	const struct pthread *t = profile__thread(&p, UINT32_MAX, UINT32_MAX);
	cr_assert_not_null(t);
	cr_assert_str_eq(t->name, "worker");
	cr_assert_null(profile__thread(&p, 0, 0));
	FILE *null = fopen("/dev/null", "w");
	struct view_filter vf = {.metric = KM_CPU, .pid = -1, .tid = -1, .threads = true};
	export__folded(null, &p, &vf);
	fclose(null);
	profile__release(&p);
	unlink(f.path);
}

/* A rare, very deep stack does not make the flamegraph thousands of pixels
 * tall (blank where it opens): rows follow the frames wide enough to see,
 * deeper ones are folded and said to be; labels fit their frames. */
Test(profile, svg_height_follows_what_can_be_read)
{
	struct fixture f;
	fx_open(&f, META);
	fx_module(&f, 0, "/bin/prog");
	char name[64];
	for (uint32_t i = 0; i < 200; i++) {
		snprintf(name, sizeof(name), "level_%u_with_a_rather_long_templated_cxx_name_for_labels", i);
		fx_loc(&f, i, 0, name, "deep.c", i + 1, NULL, NULL);
	}
	uint32_t shallow[] = {1, 0}, deep[200];
	for (int i = 0; i < 200; i++)
		deep[i] = (uint32_t)(199 - i);
	fx_stack(&f, 0, 0, 2, shallow);
	fx_stack(&f, 1, 0, 200, deep);
	fx_count(&f, 1, 1, 0, KM_CPU, 1000);
	fx_count(&f, 1, 1, 1, KM_CPU, 1);
	fx_end(&f, true);
	struct profile p;
	char err[256];
	cr_assert_eq(profile__load(&p, f.path, err, sizeof(err)), 0, "%s", err);
	char *out = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&out, &len);
	struct view_filter vf = {.metric = KM_CPU, .pid = -1, .tid = -1};
	struct svg_opts so = {.width = 1200};
	cr_assert_eq(export__svg(m, &p, &vf, &so), 0);
	fclose(m);
	int height = 0;
	char *h = strstr(out, "height=\"");
	cr_assert_not_null(h);
	sscanf(h + 8, "%d", &height);
	cr_assert_lt(height, 400, "a 1-in-1001 stack of 200 frames made the SVG %d px tall", height);
	cr_assert_not_null(strstr(out, "deeper levels folded"));
	/* every label fits its frame: characters x 7.5 px + margins <= width */
	for (char *g = strstr(out, "<rect x="); g; g = strstr(g + 1, "<rect x=")) {
		double w = 0;
		char *ws = strstr(g, "width=\"");
		sscanf(ws + 7, "%lf", &w);
		char *t = strstr(g, "<text"), *te = t ? strstr(t, "</text>") : NULL;
		char *gt = t ? strchr(t, '>') : NULL;
		if (!t || !te || !gt || gt > te)
			continue;
		size_t chars = (size_t)(te - gt - 1);
		cr_assert_leq(chars * 7.5 + 6, w + 0.01, "a label of %zu characters in a frame %.1f px wide", chars, w);
	}
	free(out);
	profile__release(&p);
	unlink(f.path);
}

/* TIMELINE points and SLOW stretches load; a stretch naming a stack not
 * defined before it, or a timeline claiming more entries than it holds, is
 * corrupt. */
Test(profile, timeline_and_loop_stretches)
{
	struct fixture f;
	fx_open(&f, META);
	fx_module(&f, 0, "/bin/prog");
	fx_loc(&f, 0, 0, "main", "prog.c", 10, NULL, NULL);
	uint32_t s0[] = {0};
	fx_stack(&f, 0, 0, 1, s0);
	struct rec_timeline_ent e[2] = {{100, 4096, 1 << 20}, {0, 4096, TIMELINE_NO_RSS}};
	f.b.len = 0;
	rec_timeline__encode(&f.b, 1500000000ull, e, 2);
	stream_writer__record(f.w, REC_TIMELINE, f.b.data, f.b.len);
	f.b.len = 0;
	rec_slow__encode(&f.b, &(struct rec_slow){100, 100, 1200000000ull, 800000000ull, 0, "Task hog"});
	stream_writer__record(f.w, REC_SLOW, f.b.data, f.b.len);
	fx_count(&f, 100, 100, 0, KM_WALL, 5);
	fx_end(&f, true);
	struct profile p;
	char err[256] = "";
	cr_assert_eq(profile__load(&p, f.path, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(p.npoints, 2);
	cr_assert_eq(p.points[0].pid, 100);
	cr_assert_eq(p.points[0].heap, 4096);
	cr_assert_eq(p.points[1].rss, TIMELINE_NO_RSS);
	cr_assert_eq(p.nslows, 1);
	cr_assert_eq(p.slows[0].dur_ns, 800000000ull);
	cr_assert_str_eq(profile__str(&p, p.slows[0].task), "Task hog");
	profile__release(&p);
	unlink(f.path);

	fx_open(&f, META);
	f.b.len = 0;
	rec_slow__encode(&f.b, &(struct rec_slow){100, 100, 1, 2, 7, "Task x"}); /* stack 7: never defined */
	stream_writer__record(f.w, REC_SLOW, f.b.data, f.b.len);
	fx_end(&f, true);
	cr_assert_eq(profile__load(&p, f.path, err, sizeof(err)), -1);
	cr_assert(strstr(err, "loop stretch"), "%s", err);
	profile__release(&p);
	unlink(f.path);

	fx_open(&f, META);
	f.b.len = 0;
	rec_timeline__encode(&f.b, 1, e, 2);
	f.b.data[8] = 3; /* n = 3, two entries follow */
	stream_writer__record(f.w, REC_TIMELINE, f.b.data, f.b.len);
	fx_end(&f, true);
	cr_assert_eq(profile__load(&p, f.path, err, sizeof(err)), -1);
	cr_assert(strstr(err, "timeline"), "%s", err);
	profile__release(&p);
	unlink(f.path);
}

/* --by state: which stack is a GIL wait, idle, Python or native. A stripped
 * interpreter's take_gil is an address: its condition-variable wait, made
 * by the interpreter itself, is still the GIL's (the interpreter's sleeps
 * and locks wait on clock_nanosleep and semaphores); an extension's own
 * condition wait is idle. */
Test(view, thread_states)
{
	struct fixture f;
	fx_open(&f, META);
	fx_module(&f, 0, "/usr/bin/python3.11");
	fx_module(&f, 1, "/lib/x86_64-linux-gnu/libc.so.6");
	fx_module(&f, 2, "/usr/lib/x86_64-linux-gnu/libcrypto.so.3");
	f.b.len = 0;
	rec_module__encode(&f.b, 3, MOD_PYTHON, 0, "[python]", "");
	stream_writer__record(f.w, REC_MODULE, f.b.data, f.b.len);
	/* location i: {module, function}; module 3 is the Python one */
	static const struct {
		uint32_t module;
		const char *func;
	} locs[] = {{3, "spinner"},
		    {0, "python3.11+0x4f94ee"},
		    {1, "___pthread_cond_timedwait64"},
		    {1, "__futex_abstimed_wait_common"},
		    {1, "clock_nanosleep"},
		    {2, "worker_wait"},
		    {0, "drop_gil"},
		    {1, "__lll_lock_wake"},
		    {2, "sha256_block"},
		    {0, "_PyEval_EvalFrameDefault"},
		    {1, "___pthread_mutex_lock"},
		    {1, "__lll_lock_wait"}};
	for (uint32_t i = 0; i < sizeof(locs) / sizeof(locs[0]); i++)
		fx_loc(&f, i, locs[i].module, locs[i].func, "", 0, NULL, NULL);
	/* stack s, leaf first, ending in -1u; want[s] is its state */
	static const uint32_t stacks[][5] = {
		{3, 2, 1, 0, -1u}, /* a stripped interpreter's take_gil: GIL wait */
		{4, 1, 0, -1u},    /* the interpreter's sleep: idle */
		{3, 2, 5, 0, -1u}, /* an extension's own condition wait: idle */
		{7, 6, 0, -1u},    /* drop_gil's forced switch: GIL wait */
		{8, 0, -1u},       /* an extension at work: native */
		{9, 0, -1u},       /* the evaluation loop: Python */
		{7, 9, 0, -1u},    /* libc under the evaluation loop: Python */
		{11, 10, 1, 0, -1u}, /* the interpreter's pthread mutex: GIL wait */
	};
	for (uint32_t s = 0; s < sizeof(stacks) / sizeof(stacks[0]); s++) {
		int n = 0;
		while (stacks[s][n] != -1u)
			n++;
		fx_stack(&f, s, 0, n, stacks[s]);
	}
	fx_count(&f, 100, 100, 0, KM_WALL, 1);
	fx_end(&f, true);
	struct profile p;
	char err[256] = "";
	cr_assert_eq(profile__load(&p, f.path, err, sizeof(err)), 0, "%s", err);
	const char *want[] = {"GIL wait", "idle", "idle", "GIL wait", "native", "Python", "Python", "GIL wait"};
	for (uint32_t s = 0; s < 8; s++)
		cr_assert_str_eq(view__thread_state(&p, s), want[s], "stack %u", s);
	cr_assert(view__waits_for_gil(&p, 0));
	cr_assert(!view__waits_for_gil(&p, 2));
	profile__release(&p);
	unlink(f.path);
}

/* A WINDOW record of (stack, metric, delta) entries for pid/tid 100. */
static void fx_window(struct fixture *f, uint64_t t_ns, int n, const int64_t (*e)[3])
{
	rec_window__begin(&f->b, t_ns);
	for (int i = 0; i < n; i++)
		rec_window__add(&f->b, &(struct rec_count){100, 100, (uint32_t)e[i][0], (uint8_t)e[i][1], e[i][2]});
	stream_writer__record(f->w, REC_WINDOW, f->b.data, f->b.len);
}

/* Windows at 1.1, 1.2 (two records), 1.3 (empty) and 1.4 s; the start is 1.0 s:
 *   stack 0: 100 B allocated in the first, freed in the third; 5 samples in each of the first two
 *   stack 1: 40 B allocated in the second, never freed (its leak) */
static void timed(struct fixture *f)
{
	fx_open(f, META);
	fx_module(f, 0, "/bin/prog");
	fx_loc(f, 0, 0, "main", "prog.c", 10, NULL, NULL);
	fx_loc(f, 1, 0, "grow", "prog.c", 20, NULL, NULL);
	uint32_t s0[] = {0}, s1[] = {1, 0};
	fx_stack(f, 0, 0, 1, s0);
	fx_stack(f, 1, 0, 2, s1);
	fx_count(f, 100, 100, 0, KM_ALLOC_BYTES, 100);
	fx_count(f, 100, 100, 0, KM_CPU, 10);
	fx_count(f, 100, 100, 1, KM_ALLOC_BYTES, 40);
	fx_count(f, 100, 100, 1, KM_LEAK_BYTES, 40);
	const int64_t w1[][3] = {{0, KM_ALLOC_BYTES, 100}, {0, KM_LIVE_BYTES, 100}, {0, KM_CPU, 5}};
	const int64_t w2a[][3] = {{0, KM_CPU, 5}}, w2b[][3] = {{1, KM_ALLOC_BYTES, 40}, {1, KM_LIVE_BYTES, 40}};
	const int64_t w4[][3] = {{0, KM_LIVE_BYTES, -100}};
	fx_window(f, 1100000000ull, 3, w1);
	fx_window(f, 1200000000ull, 1, w2a);
	fx_window(f, 1200000000ull, 2, w2b); /* the same window, split */
	fx_window(f, 1300000000ull, 0, NULL);
	fx_window(f, 1400000000ull, 1, w4);
	fx_end(f, true);
}

static int64_t cell_value(const struct profile *p, uint32_t stack, int m)
{
	for (size_t i = 0; i < p->ncells; i++)
		if (p->cells[i].stack == stack)
			return p->cells[i].v[m];
	return -1;
}

Test(profile, time_windows_give_a_stretch_widened_to_their_edges)
{
	struct fixture f;
	timed(&f);
	struct profile p;
	char err[256];
	cr_assert_eq(profile__load(&p, f.path, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(p.nwins, 4, "split records join one window: %zu", p.nwins);
	cr_assert_eq(p.wins[1].n, 3);
	cr_assert_float_eq(profile__window_end(&p, 3), 0.4, 1e-9);
	double from = 0.15, to = 0.25;
	cr_assert_eq(profile__time_range(&p, &from, &to, err, sizeof(err)), 0);
	cr_assert_float_eq(from, 0.1, 1e-9, "widened to the second window's start: %f", from);
	cr_assert_float_eq(to, 0.3, 1e-9, "and to the third's end: %f", to);
	cr_assert_eq(cell_value(&p, 0, KM_ALLOC_BYTES), 0, "allocated before the stretch");
	cr_assert_eq(cell_value(&p, 1, KM_ALLOC_BYTES), 40);
	cr_assert_eq(cell_value(&p, 0, KM_CPU), 5);
	cr_assert_eq(cell_value(&p, 0, KM_LIVE_BYTES), 100, "allocated before, still live at its end");
	cr_assert_eq(cell_value(&p, 1, KM_LIVE_BYTES), 40);
	cr_assert_eq(cell_value(&p, 1, KM_LEAK_BYTES), 0, "no window holds leak_bytes");
	cr_assert(p.ranged);
	profile__release(&p);
	/* the whole run: the totals, and live at the end is the leak */
	cr_assert_eq(profile__load(&p, f.path, err, sizeof(err)), 0, "%s", err);
	from = 0;
	to = 1e9;
	cr_assert_eq(profile__time_range(&p, &from, &to, err, sizeof(err)), 0);
	cr_assert_float_eq(to, 0.4, 1e-9);
	cr_assert_eq(cell_value(&p, 0, KM_ALLOC_BYTES), 100);
	cr_assert_eq(cell_value(&p, 0, KM_CPU), 10);
	cr_assert_eq(cell_value(&p, 0, KM_LIVE_BYTES), 0);
	cr_assert_eq(cell_value(&p, 1, KM_LIVE_BYTES), 40);
	profile__release(&p);
	/* a stretch inside one window, and one past the end: that window */
	cr_assert_eq(profile__load(&p, f.path, err, sizeof(err)), 0, "%s", err);
	from = to = 0.05;
	cr_assert_eq(profile__time_range(&p, &from, &to, err, sizeof(err)), 0);
	cr_assert_float_eq(from, 0, 1e-9);
	cr_assert_float_eq(to, 0.1, 1e-9);
	cr_assert_eq(cell_value(&p, 0, KM_ALLOC_BYTES), 100);
	from = to = 7;
	cr_assert_eq(profile__time_range(&p, &from, &to, err, sizeof(err)), 0);
	cr_assert_float_eq(from, 0.3, 1e-9);
	cr_assert_eq(cell_value(&p, 0, KM_ALLOC_BYTES), 0);
	cr_assert_eq(cell_value(&p, 0, KM_LIVE_BYTES), 0, "freed in the last window");
	profile__release(&p);
	unlink(f.path);
}

Test(profile, time_windows_refused_when_forged_or_absent)
{
	struct fixture f;
	basic(&f, true);
	struct profile p;
	char err[256];
	cr_assert_eq(profile__load(&p, f.path, err, sizeof(err)), 0, "%s", err);
	double from = 0, to = 1;
	cr_assert_eq(profile__time_range(&p, &from, &to, err, sizeof(err)), -1);
	cr_assert(strstr(err, "no time windows"), "%s", err);
	profile__release(&p);
	unlink(f.path);
	/* an undefined stack, a metric no window holds, a negative allocation */
	const int64_t bad[][3][3] = {{{9, KM_CPU, 1}}, {{0, KM_LEAK_BYTES, 1}}, {{0, KM_ALLOC_BYTES, -1}}};
	for (int i = 0; i < 3; i++) {
		fx_open(&f, META);
		fx_module(&f, 0, "/bin/prog");
		fx_loc(&f, 0, 0, "main", "prog.c", 10, NULL, NULL);
		uint32_t s0[] = {0};
		fx_stack(&f, 0, 0, 1, s0);
		fx_window(&f, 1100000000ull, 1, bad[i]);
		fx_end(&f, true);
		cr_assert_eq(profile__load(&p, f.path, err, sizeof(err)), -1, "case %d loaded", i);
		cr_assert(strstr(err, "bad window record"), "%s", err);
		profile__release(&p);
		unlink(f.path);
	}
}
