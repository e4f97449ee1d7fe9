/* Text and JSON renderings of tables and diffs, and folded stacks. */
#include <inttypes.h>
#include <jansson.h>
#include <string.h>
#include <time.h>
#include "export/export.h"
#include "stream/format.h"

void export__fmt_value(char *out, size_t n, int metric, double v)
{
	if (kiln_metric__is_bytes(metric))
		fmt_bytes(out, n, v);
	else
		snprintf(out, n, "%.0f", v);
}

const char *export__estimated(const struct profile *p, int metric, char *buf, size_t n)
{
	if (!p->heap_sample || metric == KM_CPU || metric == KM_WALL) {
		if (n)
			*buf = 0;
		return buf;
	}
	char b[32];
	snprintf(buf, n, " (estimated: --heap-sample %s)", fmt_bytes(b, sizeof(b), (double)p->heap_sample));
	return buf;
}

int export__folded(FILE *f, const struct profile *p, const struct view_filter *vf)
{
	struct folded fo;
	folded__build(&fo, p, vf);
	for (size_t i = 0; i < fo.lines.n; i++) {
		size_t id = fo.order[i];
		fprintf(f, "%s %" PRId64 "\n", intern__cstr(&fo.lines, (uint32_t)id), fo.vals[id]);
	}
	folded__release(&fo);
	return ferror(f) ? -1 : 0;
}

void export__report_header(FILE *f, const struct profile *p, const struct view_filter *vf)
{
	json_t *argv = json_object_get(p->meta, "argv");
	struct buf cmd;
	buf__init(&cmd);
	size_t i;
	json_t *a;
	json_array_foreach(argv, i, a)
	{
		if (json_is_string(a))
			buf__printf(&cmd, "%s%s", i ? " " : "", json_string_value(a));
	}
	if (!cmd.len)
		buf__printf(&cmd, "%s", p->program);
	/* the processes and threads this file has data of (not every one
	 * kiln saw start: a fork event alone is no process of the profile) */
	size_t nthreads = 0, nprocs = 0;
	struct u64map seen;
	u64map__init(&seen);
	for (i = 0; i < p->ncells; i++) {
		const struct pcell *c = &p->cells[i];
		if (vf->pid >= 0 && c->pid != (uint64_t)vf->pid)
			continue;
		bool created;
		u64map__upsert(&seen, (uint64_t)c->pid << 32 | c->tid, &created);
		nthreads += created;
		u64map__upsert(&seen, (uint64_t)1 << 63 | c->pid, &created); /* a key no (pid, tid) has */
		nprocs += created;
	}
	u64map__release(&seen);
	const char *kind = !strcmp(p->kind, "snapshot") ? "heap snapshot of" : "profile of";
	char *shown = str_clean(buf__cstr(&cmd), cmd.len); /* argv may hold terminal escapes */
	fprintf(f, "# kiln %s %s\n", kind, shown);
	free(shown);
	fprintf(f, "# duration %.2f s, %" PRIu64 " samples, %zu process%s, %zu thread%s", profile__duration(p),
		p->samples, nprocs, nprocs == 1 ? "" : "es", nthreads, nthreads == 1 ? "" : "s");
	if (p->lost)
		fprintf(f, ", %" PRIu64 " samples LOST", p->lost);
	json_t *fr = json_object_get(p->meta, "frequency");
	if (json_is_integer(fr) && p->samples)
		fprintf(f, ", %lld Hz", (long long)json_integer_value(fr));
	fprintf(f, "\n");
	if (p->ranged)
		fprintf(f, "# time: %.3f s to %.3f s of the recording only (--time, widened to the edges of the windows "
			   "it touches): what happened in it; live_* is what was live at its end\n",
			p->range_from, p->range_to);
	json_t *late = json_object_get(p->meta, "wall_late");
	json_int_t lt = json_integer_value(json_object_get(late, "ticks"));
	json_int_t un = json_integer_value(json_object_get(late, "uncharged"));
	if (lt)
		fprintf(f, "# wall: %lld tick%s came late (kiln was not run on time: a busy machine, threads late to "
			   "stop): each was charged to the next samples, so wall samples stay the time that passed\n",
			(long long)lt, lt == 1 ? "" : "s");
	if (un)
		fprintf(f, "# wall: %lld tick%s NOT charged (gaps of over a second in which kiln took no sample: it "
			   "was stopped or starved)\n",
			(long long)un, un == 1 ? "" : "s");
	json_t *se = json_object_get(p->meta, "samples_expected");
	if (se)
		fprintf(f, "# samples: the process had %.2f s of CPU while attached, but only %lld samples came of the "
			   "%lld the kernel takes at its rate: this profile is THIN (the kernel throttled or dropped "
			   "them)\n",
			json_number_value(json_object_get(se, "cpu_seconds")),
			(long long)json_integer_value(json_object_get(se, "samples")),
			(long long)json_integer_value(json_object_get(se, "expected")));
	export__waits_line(f, p, "kiln's stops (ptrace sampling, heap attach and detach)");
	/* said whenever CPU samples were asked for, even if none came */
	if (json_is_false(json_object_get(p->meta, "kernel_stacks")))
		fprintf(f, "# kernel stacks: not recorded (perf_event_paranoid > 1 and no root): time in the kernel "
			   "is charged to the user-space code that entered it\n");
	buf__release(&cmd);
}

long long export__waits_line(FILE *f, const struct profile *p, const char *who)
{
	long long we = json_integer_value(json_object_get(json_object_get(p->meta, "waits_ended"), "timed"));
	if (we > 0 && f)
		fprintf(f, "# waits: %s ended %lld wait%s with a timeout (epoll_wait, sigtimedwait, semtimedop, "
			   "io_getevents) with EINTR, which the program saw, as after ^Z and fg (waits without a "
			   "timeout waited on)\n",
			who, we, we == 1 ? "" : "s");
	return we;
}

/* Allocations at an address kiln still held live: a free it did not see
 * (lost, or taken out of order). Said only when there were any. */
static void heap_unmatched_line(FILE *f, const struct profile *p)
{
	json_int_t ov = json_integer_value(json_object_get(json_object_get(p->meta, "heap_unmatched"), "allocs_over_live"));
	if (ov > 0)
		fprintf(f, "# heap: %lld allocation%s at an address still live (a free kiln did not see); the block "
			   "before each was taken as freed there\n",
			(long long)ov, ov == 1 ? "" : "s");
}

/* What heap tracking lost, always said: "nothing lost" is a finding too. */
static void heap_loss_lines(FILE *f, const struct profile *p, int64_t pid)
{
	uint64_t loss[HL__COUNT], events = 0, procs = 0;
	profile__heap_loss(p, pid, loss);
	for (int c = 0; c < HL__COUNT; c++)
		*(!kiln_heap_loss__is_process(c) ? &events : &procs) += loss[c];
	if (!events && !procs) {
		fprintf(f, "# heap: no events lost\n");
		return;
	}
	if (events) {
		fprintf(f, "# heap: %" PRIu64 " events LOST (the figures above are incomplete):", events);
		for (int c = 0; c < HL__COUNT; c++)
			if (loss[c] && !kiln_heap_loss__is_process(c))
				fprintf(f, " %" PRIu64 " %s: %s;", loss[c], kiln_heap_loss__name(c), kiln_heap_loss__why(c));
		fprintf(f, "\n");
	}
	for (int c = 0; c < HL__COUNT; c++) {
		if (!loss[c] || !kiln_heap_loss__is_process(c))
			continue;
		fprintf(f, "# heap: %" PRIu64 " process%s not tracked (%s):", loss[c], loss[c] == 1 ? "" : "es",
			kiln_heap_loss__why(c));
		for (size_t i = 0; i < p->nlosses; i++)
			if (p->losses[i].cause == c && (pid < 0 || p->losses[i].pid == (uint64_t)pid))
				fprintf(f, " %s-%u", profile__process_name(p, p->losses[i].pid), p->losses[i].pid);
		fprintf(f, "\n");
	}
}

/* Python: the interpreters read, the stacks that could not be merged, and
 * what a Python heap profile means. */
static void python_lines(FILE *f, const struct profile *p, bool heap)
{
	json_t *py = json_object_get(p->meta, "python"), *v;
	const char *k;
	bool final = false;
	json_object_foreach(py, k, v) {
		json_int_t m = json_integer_value(json_object_get(v, "merged"));
		json_int_t u = json_integer_value(json_object_get(v, "unmerged"));
		const char *rd = json_string_value(json_object_get(v, "reader"));
		fprintf(f, "# python: pid %s is CPython %s: %lld stacks with Python frames%s%s%s", k,
			json_string_value(json_object_get(v, "version")) ? json_string_value(json_object_get(v, "version")) : "?",
			(long long)m, rd ? " (read " : "", rd ? rd : "", rd ? ")" : "");
		json_int_t ur = json_integer_value(json_object_get(v, "unread"));
		if (u)
			fprintf(f, ", %lld NOT merged (the interpreter's frames and the native stack disagreed)",
				(long long)u);
		if (ur)
			fprintf(f, ", %lld whose Python frames could not be read (the thread had no Python state "
				   "yet or any more, or the process had ended)", (long long)ur);
		json_int_t miss = json_integer_value(json_object_get(v, "missing"));
		if (miss)
			fprintf(f, ", %lld whose frames the sampler did not catch (its frame ring was full, or the "
				   "process was not known to run Python yet)", (long long)miss);
		json_int_t cyc = json_integer_value(json_object_get(v, "cyclic_frames"));
		if (cyc)
			fprintf(f, ", %lld whose Python frame chain came back on itself (a corrupt or hostile "
				   "interpreter state)", (long long)cyc);
		if (u || ur || miss || cyc)
			fprintf(f, ": those are shown as [python frames unreadable], never under another function");
		if (json_is_true(json_object_get(v, "cyclic_threads")))
			fprintf(f, "; its thread list came back on itself (read up to there: a corrupt or hostile "
				   "interpreter state)");
		json_t *go = json_object_get(p->meta, "gil_only");
		if (go)
			fprintf(f, "; --gil: only samples of a thread holding the GIL kept (%lld of %lld)",
				(long long)json_integer_value(json_object_get(go, "kept")),
				(long long)(json_integer_value(json_object_get(go, "kept")) +
					    json_integer_value(json_object_get(go, "dropped"))));
		json_t *eb = json_object_get(p->meta, "python_ebpf");
		json_int_t runs = json_integer_value(json_object_get(eb, "runs"));
		if (runs > 0)
			fprintf(f, "; reading them took %.1f us a sample in the sampled thread (eBPF)",
				(double)json_integer_value(json_object_get(eb, "ns")) / (double)runs / 1000.0);
		json_int_t drop = json_integer_value(json_object_get(eb, "dropped"));
		if (drop > 0)
			fprintf(f, "; %lld records dropped for want of room in the eBPF ring", (long long)drop);
		json_t *ps = json_object_get(p->meta, "ptrace_stops");
		json_int_t nst = json_integer_value(json_object_get(ps, "stops"));
		if (nst > 0)
			fprintf(f, "; each sample stopped its thread %.1f us on average (ptrace)",
				(double)json_integer_value(json_object_get(ps, "ns")) / (double)nst / 1000.0);
		const char *why = json_string_value(json_object_get(p->meta, "python_frames_unavailable"));
		if (miss && why)
			fprintf(f, " (%s)", why);
		json_int_t ub = json_integer_value(json_object_get(v, "unreadable_frames"));
		if (ub)
			fprintf(f, "; %lld Python frames named [unreadable Python frame] (their code object was freed "
				   "before kiln read it: code run once, as a module's body at import)", (long long)ub);
		fprintf(f, "\n");
		final |= json_is_true(json_object_get(v, "heap_until_finalization"));
	}
	json_t *n = json_object_get(p->meta, "python_notices");
	size_t i;
	json_array_foreach(n, i, v)
		if (json_is_string(v))
			fprintf(f, "# python: %s\n", json_string_value(v));
	if (!heap || !json_object_size(py))
		return;
	const char *pm = json_string_value(json_object_get(p->meta, "python_allocator"));
	if (pm && json_is_true(json_object_get(p->meta, "python_domains")))
		fprintf(f, "# python: allocator %s, its object and memory domains traced (--trace-python-allocators): "
			   "every object is seen where Python allocates it\n", pm);
	else if (pm && strcmp(pm, "malloc"))
		fprintf(f, "# python: allocator %s: objects of 512 B or less come from Python's own arenas and are not "
			   "seen one by one (record --trace-python-allocators or --python-allocator malloc shows each)\n", pm);
	else if (pm)
		fprintf(f, "# python: allocator malloc (PYTHONMALLOC=malloc): every object is seen\n");
	if (final)
		fprintf(f, "# python: the heap is counted until the interpreter began to finalize: 'leaked' is what the "
			   "program still held then (module globals included), which CPython frees at exit, not "
			   "necessarily a leak\n");
}

/* --heap -p: the numbers start at the attach. */
static void attach_lines(FILE *f, const struct profile *p)
{
	json_t *ha = json_object_get(p->meta, "heap_attach");
	if (!json_is_object(ha))
		return;
	time_t t = (time_t)(json_integer_value(json_object_get(ha, "start_ns")) / 1000000000);
	struct tm tm;
	char when[32] = "?";
	if (localtime_r(&t, &tm))
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	fprintf(f, "# heap: attached at %s: the figures cover the time since; blocks allocated before it are not "
		   "counted (%lld of their frees seen)\n",
		when, (long long)json_integer_value(json_object_get(ha, "frees_before")));
}

/* A Python profile's threads, each with the share of its samples in which
 * it ran Python, native code, waited for the GIL or was idle
 * (view__thread_state): scalene's columns, from the stacks. */
static void state_lines(FILE *f, const struct profile *p, const struct view_filter *vf)
{
	static const char *const names[] = {"Python", "native", "GIL wait", "idle"};
	struct thr {
		uint32_t pid, tid;
		int64_t n[4], all;
	} *v = NULL;
	size_t nv = 0, cv = 0;
	struct u64map idx;
	u64map__init(&idx);
	for (size_t i = 0; i < p->ncells; i++) {
		const struct pcell *c = &p->cells[i];
		if (!view__cell_selected(c, vf) || c->v[vf->metric] <= 0 || view__task_wait(p, c->stack))
			continue;
		const char *st = view__thread_state(p, c->stack);
		int k = 0;
		while (k < 3 && strcmp(st, names[k]))
			k++;
		bool added;
		struct u64map_ent *e = u64map__upsert(&idx, (uint64_t)c->pid << 32 | c->tid, &added);
		if (added) {
			ARR_GROW(v, cv, nv + 1);
			memset(&v[nv], 0, sizeof(*v));
			v[nv].pid = c->pid;
			v[nv].tid = c->tid;
			e->v1 = nv++;
		}
		v[e->v1].n[k] += c->v[vf->metric];
		v[e->v1].all += c->v[vf->metric];
	}
	if (nv) {
		fprintf(f, "# threads:");
		for (size_t i = 0; i < nv && i < 8; i++) {
			const struct pthread *th = profile__thread(p, v[i].pid, v[i].tid);
			fprintf(f, "%s %s-%u", i ? ";" : "", th && th->name && *th->name ? th->name : "thread", v[i].tid);
			for (int k = 0; k < 4; k++)
				if (v[i].n[k])
					fprintf(f, " %s %.0f%%", names[k], 100.0 * (double)v[i].n[k] / (double)v[i].all);
		}
		if (nv > 8)
			fprintf(f, "; %zu more (report --by state)", nv - 8);
		fputc('\n', f);
	}
	free(v);
	u64map__release(&idx);
}

/* The heap over time as a sparkline, and where several processes ran, the
 * largest of each (they need not have coexisted: the peak above is the
 * largest moment of them all together). */
static void timeline_lines(FILE *f, const struct profile *p)
{
	char spark[200 * 3 + 1], a[32];
	int64_t max;
	if (!export__sparkline(p, 60, spark, sizeof(spark), &max))
		return;
	double secs = p->npoints ? (double)(p->points[p->npoints - 1].t_ns - p->points[0].t_ns) / 1e9 : 0;
	fprintf(f, "# heap over time: %s (%.2f s, most %s)\n", spark, secs, fmt_bytes(a, sizeof(a), (double)max));
	struct u64map best;
	u64map__init(&best);
	for (size_t i = 0; i < p->npoints; i++) {
		const struct ppoint *pt = &p->points[i];
		if (!pt->pid || pt->heap == TIMELINE_NO_HEAP)
			continue;
		struct u64map_ent *e = u64map__upsert(&best, pt->pid, NULL);
		if (pt->heap > (int64_t)e->v1)
			e->v1 = (uint64_t)pt->heap;
	}
	if (best.len > 1) {
		fprintf(f, "# heap peak of each process:");
		size_t it = 0, shown = 0;
		for (struct u64map_ent *e; (e = u64map__next(&best, &it)) && shown < 8; shown++)
			fprintf(f, "%s %s-%u %s", shown ? "," : "", profile__process_name(p, (uint32_t)e->key),
				(uint32_t)e->key, fmt_bytes(a, sizeof(a), (double)e->v1));
		if (best.len > 8)
			fprintf(f, ", and %zu more", best.len - 8);
		fputc('\n', f);
	}
	u64map__release(&best);
}

void export__heap_summary(FILE *f, const struct profile *p, const struct view_filter *vf)
{
	int64_t tot[KM__COUNT] = {0};
	for (size_t i = 0; i < p->ncells; i++) {
		const struct pcell *c = &p->cells[i];
		if ((vf->pid >= 0 && c->pid != (uint64_t)vf->pid) || (vf->tid >= 0 && c->tid != (uint64_t)vf->tid))
			continue;
		for (int m = 0; m < KM__COUNT; m++)
			SAT_ADD(tot[m], c->v[m]);
	}
	char a[32], b[32];
	if (!strcmp(p->kind, "snapshot")) {
		fprintf(f, "# heap: %s live in %" PRId64 " blocks\n", fmt_bytes(a, sizeof(a), (double)tot[KM_LIVE_BYTES]),
			tot[KM_LIVE_COUNT]);
		return;
	}
	bool heap = false;
	json_t *ev = json_object_get(p->meta, "events"), *e;
	size_t i;
	json_array_foreach(ev, i, e)
		heap |= json_is_string(e) && !strcmp(json_string_value(e), "heap");
	python_lines(f, p, heap);
	if (json_object_size(json_object_get(p->meta, "python")) && (vf->metric == KM_CPU || vf->metric == KM_WALL))
		state_lines(f, p, vf);
	if (!heap)
		return;
	attach_lines(f, p);
	if (p->heap_sample)
		fprintf(f, "# heap: SAMPLED (--heap-sample %s): allocations taken by bytes (Poisson, one every %s on "
			   "average), each weighed by the inverse of its chance: every heap figure is an ESTIMATE; "
			   "temporaries are not estimated\n",
			fmt_bytes(a, sizeof(a), (double)p->heap_sample), a);
	const char *about = p->heap_sample ? "about " : "";
	if (p->ranged)
		fprintf(f, "# heap in %.3f-%.3f s: %s%s allocated in %s%" PRId64 " calls; %s%s live at %.3f s in %" PRId64
			   " blocks\n",
			p->range_from, p->range_to, about, fmt_bytes(a, sizeof(a), (double)tot[KM_ALLOC_BYTES]), about,
			tot[KM_ALLOC_COUNT], about, fmt_bytes(b, sizeof(b), (double)tot[KM_LIVE_BYTES]), p->range_to,
			tot[KM_LIVE_COUNT]);
	else if (!p->has[KM_ALLOC_COUNT] && p->heap_sample)
		fprintf(f, "# heap: no allocation was sampled (the program allocated too few bytes for a mean of %s)\n",
			fmt_bytes(a, sizeof(a), (double)p->heap_sample));
	else if (!p->has[KM_ALLOC_COUNT])
		fprintf(f, "# heap: no allocations were recorded\n");
	else if (p->heap_sample)
		fprintf(f, "# heap: about %s allocated in about %" PRId64 " calls; peak about %s; leaked about %s in about "
			   "%" PRId64 " blocks\n",
			fmt_bytes(a, sizeof(a), (double)tot[KM_ALLOC_BYTES]), tot[KM_ALLOC_COUNT],
			fmt_bytes(b, sizeof(b), (double)tot[KM_PEAK_BYTES]),
			fmt_bytes((char[32]){0}, 32, (double)tot[KM_LEAK_BYTES]), tot[KM_LEAK_COUNT]);
	else
		fprintf(f, "# heap: %s allocated in %" PRId64 " calls, %" PRId64 " temporary; peak %s; leaked %s in %" PRId64
		   " blocks\n",
		fmt_bytes(a, sizeof(a), (double)tot[KM_ALLOC_BYTES]), tot[KM_ALLOC_COUNT], tot[KM_TEMP_COUNT],
		fmt_bytes(b, sizeof(b), (double)tot[KM_PEAK_BYTES]), fmt_bytes((char[32]){0}, 32, (double)tot[KM_LEAK_BYTES]),
		tot[KM_LEAK_COUNT]);
	if (tot[KM_TEMP_COUNT] > 0)
		fprintf(f, "# heap: temporary = freed while still the latest allocation of the thread that made it "
			   "(heaptrack also wants no free in between: it counts fewer)\n");
	if (vf->pid < 0)
		timeline_lines(f, p);
	heap_loss_lines(f, p, vf->pid);
	heap_unmatched_line(f, p);
}

static size_t shown_rows(const struct table *t, long limit)
{
	size_t n = table__nrows(t);
	return limit > 0 && (size_t)limit < n ? (size_t)limit : n;
}

/* A Python file as a user finds it: inside site-packages (or
 * dist-packages) from there, under the program's working directory
 * relative to it, else as Python named it. */
static const char *python_path(const struct profile *p, const char *file)
{
	static const char *const roots[] = {"/site-packages/", "/dist-packages/"};
	for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
		const char *at = strstr(file, roots[i]);
		if (at)
			return at + strlen(roots[i]);
	}
	const char *cwd = json_string_value(json_object_get(p->meta, "cwd"));
	size_t cl = cwd ? strlen(cwd) : 0;
	if (cl > 1 && !strncmp(file, cwd, cl) && file[cl] == '/')
		return file + cl + 1;
	return file;
}

static const char *row_location(const struct profile *p, const struct row *r, char *buf, size_t n)
{
	const char *file = r->frame ? profile__str(p, r->frame->file) : "";
	if (*file && r->frame->kind == FK_PYTHON && r->frame->def_line)
		snprintf(buf, n, "%s:%u", python_path(p, file), r->frame->def_line); /* where its def is */
	else if (*file)
		snprintf(buf, n, "%s:%u", path_base(file), r->frame->line);
	else if (r->frame && r->frame->module < p->nmodules)
		snprintf(buf, n, "%s", path_base(p->modules[r->frame->module].path));
	else
		snprintf(buf, n, "-");
	return buf;
}

void export__table_text(FILE *f, const struct profile *p, const struct table *t, long limit, bool sort_self)
{
	const char *mname = kiln_metric__name(t->metric);
	double sum = t->sum ? (double)t->sum : 1;
	char total[32], est[80];
	export__fmt_value(total, sizeof(total), t->metric, (double)t->sum);
	fprintf(f, "# metric %s%s: %s in all; rows by %s, sorted by %s\n\n", mname,
		export__estimated(p, t->metric, est, sizeof(est)), total, by__name(t->by), sort_self ? "self" : "total");
	if (!table__nrows(t)) {
		fprintf(f, "(no %s data%s)\n", mname, t->sum ? "" : " in this profile");
		return;
	}
	fprintf(f, "%12s %7s %12s %7s  %-s\n", "total", "total%", "self", "self%",
		t->by == BY_STACK ? "stack" : by__name(t->by));
	size_t n = shown_rows(t, limit);
	for (size_t i = 0; i < n; i++) {
		size_t id = t->order[i];
		const struct row *r = &t->rows[id];
		char tv[32], sv[32], loc[300];
		export__fmt_value(tv, sizeof(tv), t->metric, (double)r->total);
		export__fmt_value(sv, sizeof(sv), t->metric, (double)r->self);
		fprintf(f, "%12s %6.2f%% %12s %6.2f%%  %s", tv, 100.0 * (double)r->total / sum, sv,
			100.0 * (double)r->self / sum, table__key(t, id));
		if (t->by == BY_FUNCTION)
			fprintf(f, "  [%s]", row_location(p, r, loc, sizeof(loc)));
		fputc('\n', f);
	}
	if (n < table__nrows(t))
		fprintf(f, "... %zu more rows (--limit 0 shows all)\n", table__nrows(t) - n);
}

void export__table_json(FILE *f, const struct profile *p, const struct table *t, long limit, bool sort_self,
			const struct view_filter *vf)
{
	json_t *o = json_object();
	json_object_set_new(o, "file", json_string(p->path));
	json_object_set_new(o, "kind", json_string(p->kind));
	json_object_set_new(o, "program", json_string(p->program));
	json_object_set_new(o, "metric", json_string(kiln_metric__name(t->metric)));
	char est[80];
	json_object_set_new(o, "estimated", json_boolean(*export__estimated(p, t->metric, est, sizeof(est))));
	if (p->heap_sample)
		json_object_set_new(o, "heap_sample", json_integer((json_int_t)p->heap_sample));
	json_object_set_new(o, "by", json_string(by__name(t->by)));
	json_object_set_new(o, "sort", json_string(sort_self ? "self" : "total"));
	json_object_set_new(o, "total", json_integer(t->sum));
	json_object_set_new(o, "samples", json_integer((json_int_t)p->samples));
	json_object_set_new(o, "lost", json_integer((json_int_t)p->lost));
	uint64_t loss[HL__COUNT];
	profile__heap_loss(p, vf->pid, loss);
	json_t *hl = json_object(), *hu = json_object();
	for (int c = 0; c < HL__COUNT; c++)
		json_object_set_new(!kiln_heap_loss__is_process(c) ? hl : hu, kiln_heap_loss__name(c),
				    json_integer((json_int_t)(loss[c] > INT64_MAX ? INT64_MAX : loss[c])));
	json_object_set_new(o, "heap_lost_events", hl);
	json_object_set_new(o, "heap_untracked_processes", hu);
	json_t *um = json_object_get(p->meta, "heap_unmatched");
	if (um)
		json_object_set(o, "heap_unmatched", um);
	json_object_set_new(o, "duration_s", json_real(profile__duration(p)));
	if (p->ranged) /* --time: the stretch the rows hold, widened to its windows' edges */
		json_object_set_new(o, "time", json_pack("{s:f, s:f}", "from_s", p->range_from, "to_s", p->range_to));
	json_object_set_new(o, "complete", json_boolean(p->complete));
	json_t *rows = json_array();
	size_t n = shown_rows(t, limit);
	double sum = t->sum ? (double)t->sum : 1;
	for (size_t i = 0; i < n; i++) {
		size_t id = t->order[i];
		const struct row *r = &t->rows[id];
		json_t *row = json_object();
		json_object_set_new(row, "name", json_string(table__key(t, id)));
		json_object_set_new(row, "self", json_integer(r->self));
		json_object_set_new(row, "total", json_integer(r->total));
		json_object_set_new(row, "self_pct", json_real(100.0 * (double)r->self / sum));
		json_object_set_new(row, "total_pct", json_real(100.0 * (double)r->total / sum));
		if (r->frame && t->by != BY_STACK) {
			const char *file = profile__str(p, r->frame->file);
			json_object_set_new(row, "file", json_string(file));
			json_object_set_new(row, "line", json_integer(r->frame->line));
			if (r->frame->def_line)
				json_object_set_new(row, "def_line", json_integer(r->frame->def_line));
			json_object_set_new(row, "module", json_string(r->frame->module < p->nmodules
									       ? p->modules[r->frame->module].path
									       : ""));
		}
		json_array_append_new(rows, row);
	}
	json_object_set_new(o, "rows", rows);
	json_object_set_new(o, "rows_total", json_integer((json_int_t)table__nrows(t)));
	(void)vf;
	json_dumpf(o, f, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	fputc('\n', f);
	json_decref(o);
}

void export__diff_text(FILE *f, const struct diff *d, int metric, const char *unit, long limit)
{
	char a[32], b[32], c[32];
	fprintf(f, "# diff of %s by %s\n", kiln_metric__name(metric), unit);
	if (d->base_scale)
		fprintf(f, "# shares compared: base scaled by x%.3f to new's total (%lld -> %lld); --raw compares counts\n",
			d->base_scale, (long long)d->base_raw_sum, (long long)d->new_sum);
	fprintf(f, "\n");
	fprintf(f, "%14s %14s %14s %9s  %s\n", "base", "new", "delta", "delta%", unit);
	size_t n = d->n;
	if (limit > 0 && (size_t)limit < n)
		n = (size_t)limit;
	size_t shown = 0;
	for (size_t i = 0; i < d->n && shown < n; i++) {
		const struct diff_row *r = &d->rows[i];
		int64_t delta = r->new_ - r->base;
		if (!delta)
			continue;
		export__fmt_value(a, sizeof(a), metric, (double)r->base);
		export__fmt_value(b, sizeof(b), metric, (double)r->new_);
		export__fmt_value(c, sizeof(c), metric, (double)delta);
		char pct[16];
		if (r->base)
			snprintf(pct, sizeof(pct), "%+.1f%%", 100.0 * (double)delta / (double)r->base);
		else
			snprintf(pct, sizeof(pct), "new");
		char dv[48];
		snprintf(dv, sizeof(dv), "%s%s", delta > 0 ? "+" : "", c);
		fprintf(f, "%14s %14s %14s %9s  %s\n", a, b, dv, pct, r->key);
		shown++;
	}
	if (!shown)
		fprintf(f, "(no change)\n");
	int64_t delta = d->new_sum - d->base_sum;
	export__fmt_value(a, sizeof(a), metric, (double)d->base_sum);
	export__fmt_value(b, sizeof(b), metric, (double)d->new_sum);
	export__fmt_value(c, sizeof(c), metric, (double)delta);
	char dv[48];
	snprintf(dv, sizeof(dv), "%s%s", delta > 0 ? "+" : "", c);
	fprintf(f, "%14s %14s %14s %9s  %s\n", a, b, dv, "", "TOTAL");
}

void export__diff_json(FILE *f, const struct diff *d, int metric, const char *by, long limit)
{
	json_t *o = json_object();
	json_object_set_new(o, "metric", json_string(kiln_metric__name(metric)));
	json_object_set_new(o, "by", json_string(by));
	json_object_set_new(o, "base_total", json_integer(d->base_sum));
	json_object_set_new(o, "new_total", json_integer(d->new_sum));
	json_object_set_new(o, "delta_total", json_integer(d->new_sum - d->base_sum));
	json_object_set_new(o, "normalized", json_boolean(d->base_scale != 0));
	if (d->base_scale) {
		json_object_set_new(o, "base_scale", json_real(d->base_scale));
		json_object_set_new(o, "base_total_raw", json_integer(d->base_raw_sum));
	}
	json_t *rows = json_array();
	size_t shown = 0;
	for (size_t i = 0; i < d->n; i++) {
		const struct diff_row *r = &d->rows[i];
		if (r->new_ == r->base)
			continue;
		if (limit > 0 && shown >= (size_t)limit)
			break;
		json_t *row = json_object();
		json_object_set_new(row, "name", json_string(r->key));
		json_object_set_new(row, "base", json_integer(r->base));
		json_object_set_new(row, "new", json_integer(r->new_));
		json_object_set_new(row, "delta", json_integer(r->new_ - r->base));
		json_object_set_new(row, "delta_pct",
				    r->base ? json_real(100.0 * (double)(r->new_ - r->base) / (double)r->base) : json_null());
		json_array_append_new(rows, row);
		shown++;
	}
	json_object_set_new(o, "rows", rows);
	json_dumpf(o, f, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	fputc('\n', f);
	json_decref(o);
}

void export__diff_folded(FILE *f, const struct diff *d)
{
	for (size_t i = 0; i < d->n; i++) {
		int64_t delta = d->rows[i].new_ - d->rows[i].base;
		if (delta)
			fprintf(f, "%s %" PRId64 "\n", d->rows[i].key, delta);
	}
}
