/* Loading a profile file (stream records) into the in-memory model of
 * profile.h. Each record is decoded through a bounds-checked cursor and every
 * reference (a location's module, a stack's locations, a cell's stack) is
 * checked against what was defined before it: a file that breaks any rule is
 * refused as corrupt, one that is merely cut short loads with a warning. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "aggregate/profile.h"
#include "aggregate/profile_int.h"
#include "stream/records.h"
#include "stream/stream.h"

static struct pframe marker_frame, native_frame;

static int corrupt(char *err, size_t errlen, const char *what, size_t off)
{
	snprintf(err, errlen, "corrupt profile: bad %s record near byte %zu", what, off);
	return -1;
}

static uint32_t loc_fallback_name(struct profile *p, uint32_t module, uint64_t addr)
{
	if (module == UINT32_MAX || module >= p->nmodules)
		return p->str_unknown;
	char name[512];
	snprintf(name, sizeof(name), "%s+0x%llx", path_base(p->modules[module].path), (unsigned long long)addr);
	return intern__str(&p->strings, name);
}

static uint8_t module_frame_kind(const struct profile *p, uint32_t module)
{
	if (module >= p->nmodules)
		return FK_LIBRARY;
	const struct pmodule *m = &p->modules[module];
	switch (m->kind) {
	case 2: return FK_JIT;
	case 4: return FK_PYTHON;
	case 3: return FK_KERNEL;
	case 1: return FK_KERNEL;
	default: break;
	}
	return strstr(path_base(m->path), ".so") ? FK_LIBRARY : FK_PROGRAM;
}

static uint32_t cell_id(struct profile *p, uint32_t pid, uint32_t tid, uint32_t stack)
{
	uint32_t key[3] = {pid, tid, stack};
	bool added;
	uint32_t id = intern__put(&p->cellkeys, key, sizeof(key), &added);
	if (added) {
		ARR_GROW(p->cells, p->ccells, id + 1);
		memset(&p->cells[id], 0, sizeof(p->cells[id]));
		p->cells[id].pid = pid;
		p->cells[id].tid = tid;
		p->cells[id].stack = stack;
		p->ncells = id + 1;
	}
	return id;
}

static void cell_add(struct profile *p, uint32_t pid, uint32_t tid, uint32_t stack, int metric, int64_t v)
{
	uint32_t id = cell_id(p, pid, tid, stack); /* before p->cells is read: it may move */
	p->cells[id].v[metric] = v;                /* absolute: the last record wins */
}

/* A WINDOW record: its entries join the window of its time (a large window
 * comes as several records), or open the next. */
static int window_add(struct profile *p, struct cursor *c, uint64_t t, uint32_t n)
{
	if (p->nwins && t < p->wins[p->nwins - 1].t_ns)
		t = p->wins[p->nwins - 1].t_ns; /* the clock stepped back: order is the file's */
	if (!p->nwins || t != p->wins[p->nwins - 1].t_ns) {
		ARR_GROW(p->wins, p->cwins, p->nwins + 1);
		p->wins[p->nwins++] = (struct pwindow){.t_ns = t, .first = p->nwents};
	}
	ARR_GROW(p->wents, p->cwents, p->nwents + n);
	struct rec_count e;
	int rc;
	while ((rc = rec_counts__next(c, &e)) == 1) {
		if (e.stack >= p->nstacks || !profile__time_metric(e.metric))
			return -1;
		if (e.value < 0 && e.metric != KM_LIVE_BYTES && e.metric != KM_LIVE_COUNT)
			return -1; /* only what is live can shrink */
		uint32_t id = cell_id(p, e.pid, e.tid, e.stack);
		p->wents[p->nwents++] = (struct pwent){id, e.metric, e.value};
		p->wins[p->nwins - 1].n++;
	}
	return rc;
}

static int decode(struct profile *p, uint16_t type, const unsigned char *pl, uint32_t len, size_t off,
		  char *err, size_t errlen)
{
	struct cursor c;
	cursor__init(&c, pl, len);
	switch (type) {
	case REC_META: {
		json_error_t je;
		json_t *j = json_loadb((const char *)pl, len, 0, &je);
		if (!j || !json_is_object(j)) {
			json_decref(j);
			return corrupt(err, errlen, "meta", off);
		}
		json_decref(p->meta);
		p->meta = j;
		json_t *k = json_object_get(j, "kind");
		p->kind = json_is_string(k) ? json_string_value(k) : "profile";
		json_t *pr = json_object_get(j, "program");
		p->program = json_is_string(pr) ? json_string_value(pr) : "";
		json_t *st = json_object_get(j, "start_ns");
		if (json_is_integer(st))
			p->start_ns = (uint64_t)json_integer_value(st);
		json_t *hs = json_object_get(j, "heap_sample");
		p->heap_sample = json_is_integer(hs) && json_integer_value(hs) > 0 ? (uint64_t)json_integer_value(hs) : 0;
		return 0;
	}
	case REC_PROCESS: {
		struct rec_process rp;
		if (rec_process__decode(pl, len, &rp) < 0)
			return corrupt(err, errlen, "process", off);
		struct pprocess *pr = (struct pprocess *)profile__process(p, rp.pid);
		if (!pr) {
			ARR_GROW(p->procs, p->cprocs, p->nprocs + 1);
			pr = &p->procs[p->nprocs++];
			pr->status = -1;
			u64map__upsert(&p->procidx, (uint64_t)rp.pid, NULL)->v1 = p->nprocs;
		} else {
			free(pr->name);
			free(pr->exe);
		}
		pr->pid = rp.pid;
		pr->ppid = rp.ppid;
		pr->start_ns = rp.start_ns;
		pr->name = rp.name; /* taken over */
		pr->exe = rp.exe;
		return 0;
	}
	case REC_THREAD: {
		struct rec_thread rt;
		if (rec_thread__decode(pl, len, &rt) < 0)
			return corrupt(err, errlen, "thread", off);
		struct pthread *t = (struct pthread *)profile__thread(p, rt.pid, rt.tid);
		if (!t) {
			ARR_GROW(p->threads, p->cthreads, p->nthreads + 1);
			t = &p->threads[p->nthreads++];
			u64map__upsert(&p->thridx, ((uint64_t)rt.pid << 32) | rt.tid, NULL)->v1 = p->nthreads;
		} else {
			free(t->name);
		}
		t->pid = rt.pid;
		t->tid = rt.tid;
		t->name = rt.name; /* taken over */
		return 0;
	}
	case REC_EXIT: {
		struct rec_exit re;
		if (rec_exit__decode(pl, len, &re) < 0)
			return corrupt(err, errlen, "exit", off);
		struct pprocess *pr = (struct pprocess *)profile__process(p, re.pid);
		if (pr) {
			pr->status = re.status;
			pr->end_ns = re.end_ns;
			pr->exited = true;
		}
		return 0;
	}
	case REC_MODULE: {
		struct rec_module rm;
		if (rec_module__decode(pl, len, &rm) < 0)
			return corrupt(err, errlen, "module", off);
		if (rm.id != p->nmodules) {
			rec_module__release(&rm);
			return corrupt(err, errlen, "module", off);
		}
		ARR_GROW(p->modules, p->cmodules, p->nmodules + 1);
		struct pmodule *m = &p->modules[p->nmodules++];
		m->path = rm.path; /* taken over */
		m->build_id = rm.build_id;
		m->kind = rm.kind;
		m->pid = rm.pid;
		return 0;
	}
	case REC_LOC: {
		struct rec_loc rl;
		if (rec_loc__decode(pl, len, &rl) < 0 || rl.id != p->nlocs ||
		    (rl.module != UINT32_MAX && rl.module >= p->nmodules))
			return corrupt(err, errlen, "location", off);
		ARR_GROW(p->locs, p->clocs, p->nlocs + 1);
		struct ploc *l = &p->locs[p->nlocs++];
		l->module = rl.module;
		l->addr = rl.addr;
		l->flags = rl.flags;
		l->nframes = 1;
		l->frames = xcalloc(1, sizeof(*l->frames));
		l->frames[0].func = loc_fallback_name(p, rl.module, rl.addr);
		l->frames[0].file = p->str_empty;
		l->frames[0].module = rl.module;
		l->frames[0].kind = module_frame_kind(p, rl.module);
		return 0;
	}
	case REC_SYM: {
		struct rec_sym rs;
		if (rec_sym__decode(pl, len, &rs) < 0 || rs.loc >= p->nlocs) {
			if (rs.f)
				rec_sym__release(&rs);
			return corrupt(err, errlen, "symbol", off);
		}
		uint16_t n = rs.n, ntail = 0;
		struct pframe *fr = xcalloc(n, sizeof(*fr));
		struct ploc *l = &p->locs[rs.loc];
		for (uint16_t i = 0; i < n; i++) {
			const struct rec_frame *f = &rs.f[i];
			if (f->inlined == 2 && i != ntail) { /* tail-call frames come first */
				free(fr);
				rec_sym__release(&rs);
				return corrupt(err, errlen, "symbol", off);
			}
			ntail += f->inlined == 2;
			fr[i].func = *f->func ? intern__str(&p->strings, f->func) : l->frames[0].func;
			fr[i].file = intern__str(&p->strings, f->file);
			fr[i].line = f->line;
			fr[i].def_line = f->def_line;
			fr[i].inlined = f->inlined;
			fr[i].module = l->module;
			fr[i].kind = f->inlined ? FK_INLINED : module_frame_kind(p, l->module);
		}
		rec_sym__release(&rs);
		free(l->frames);
		free(l->tail);
		l->tail = NULL;
		l->ntail = 0;
		if (ntail == n) { /* only tail frames: keep the fallback name */
			l->frames = xcalloc(1, sizeof(*l->frames));
			l->frames[0] = fr[0];
			l->frames[0].func = loc_fallback_name(p, l->module, l->addr);
			l->frames[0].kind = module_frame_kind(p, l->module);
			l->frames[0].inlined = 0;
			l->nframes = 1;
		} else {
			l->frames = xmemdup(fr + ntail, (size_t)(n - ntail) * sizeof(*fr));
			l->nframes = (uint16_t)(n - ntail);
		}
		if (ntail) {
			l->tail = xmemdup(fr, ntail * sizeof(*fr));
			l->ntail = ntail;
			for (uint16_t i = 0; i < ntail; i++)
				l->tail[i].kind = module_frame_kind(p, l->module);
		}
		free(fr);
		return 0;
	}
	case REC_STACK: {
		struct rec_stack st;
		if (rec_stack__decode(pl, len, &st) < 0 || st.id != p->nstacks)
			goto bad_stack;
		for (uint16_t i = 0; i < st.depth; i++)
			if (st.locs[i] >= p->nlocs)
				goto bad_stack;
		ARR_GROW(p->stacks, p->cstacks, p->nstacks + 1);
		struct pstack *ps = &p->stacks[p->nstacks++];
		ps->depth = st.depth;
		ps->flags = st.flags;
		ps->locs = st.locs; /* taken over */
		return 0;
	bad_stack:
		free(st.locs);
		return corrupt(err, errlen, "stack", off);
	}
	case REC_COUNTS: {
		uint32_t n;
		struct rec_count e;
		int rc;
		if (rec_counts__open(&c, pl, len, &n) < 0)
			return corrupt(err, errlen, "counts", off);
		while ((rc = rec_counts__next(&c, &e)) == 1) {
			if (e.stack >= p->nstacks || e.metric >= KM__COUNT || e.value < 0) /* no metric is negative */
				return corrupt(err, errlen, "counts", off);
			cell_add(p, e.pid, e.tid, e.stack, e.metric, e.value);
		}
		return rc < 0 ? corrupt(err, errlen, "counts", off) : 0;
	}
	case REC_WINDOW: {
		uint64_t t;
		uint32_t n;
		if (rec_window__open(&c, pl, len, &t, &n) < 0 || window_add(p, &c, t, n) < 0)
			return corrupt(err, errlen, "window", off);
		return 0;
	}
	case REC_END: {
		struct rec_end re;
		if (rec_end__decode(pl, len, &re) < 0)
			return corrupt(err, errlen, "end", off);
		p->end_ns = re.end_ns;
		p->samples = re.samples;
		p->lost = re.lost;
		p->complete = true;
		return 0;
	}
	case REC_LOST: {
		uint64_t lost;
		if (rec_u64__decode(pl, len, &lost) < 0)
			return corrupt(err, errlen, "lost", off);
		p->lost = lost;
		return 0;
	}
	case REC_TIME: {
		uint64_t t;
		if (rec_u64__decode(pl, len, &t) < 0)
			return corrupt(err, errlen, "time", off);
		if (t > p->last_ns)
			p->last_ns = t;
		return 0;
	}
	case REC_SLOW: {
		struct rec_slow sl;
		if (rec_slow__decode(pl, len, &sl) < 0)
			return corrupt(err, errlen, "loop stretch", off);
		if (sl.stack >= p->nstacks) {
			free(sl.task);
			return corrupt(err, errlen, "loop stretch (undefined stack)", off);
		}
		ARR_GROW(p->slows, p->cslows, p->nslows + 1);
		p->slows[p->nslows++] = (struct pslow){.pid = sl.pid, .tid = sl.tid, .stack = sl.stack,
						       .start_ns = sl.start_ns, .dur_ns = sl.dur_ns,
						       .task = intern__str(&p->strings, sl.task)};
		free(sl.task);
		return 0;
	}
	case REC_TIMELINE: {
		static struct rec_timeline_ent ents[TIMELINE_MAX_ENTRIES];
		uint64_t t;
		int k = rec_timeline__decode(pl, len, &t, ents);
		if (k < 0)
			return corrupt(err, errlen, "timeline", off);
		ARR_GROW(p->points, p->cpoints, p->npoints + (size_t)k);
		for (int i = 0; i < k; i++)
			p->points[p->npoints++] = (struct ppoint){t, ents[i].pid, ents[i].heap, ents[i].rss};
		return 0;
	}
	case REC_HEAP_LOSS: {
		struct rec_heap_loss hl;
		if (rec_heap_loss__decode(pl, len, &hl) < 0)
			return corrupt(err, errlen, "heap loss", off);
		/* indexed: a profile may hold a loss record for each of many pids */
		bool added;
		struct u64map_ent *e = u64map__upsert(&p->lossidx, (uint64_t)hl.pid << 8 | hl.cause, &added);
		if (added) {
			ARR_GROW(p->losses, p->closses, p->nlosses + 1);
			e->v1 = p->nlosses++;
		}
		size_t i = (size_t)e->v1;
		p->losses[i] = (struct ploss){.pid = hl.pid, .cause = hl.cause, .count = hl.count}; /* last wins */
		return 0;
	}
	default:
		/* Unknown record types are skipped: later minor versions may add some. */
		return 0;
	}
}

void profile__heap_loss(const struct profile *p, int64_t pid, uint64_t out[HL__COUNT])
{
	memset(out, 0, sizeof(uint64_t) * HL__COUNT);
	for (size_t i = 0; i < p->nlosses; i++)
		if (pid < 0 || p->losses[i].pid == (uint64_t)pid) {
			uint64_t *o = &out[p->losses[i].cause];
			*o = *o + p->losses[i].count < *o ? UINT64_MAX : *o + p->losses[i].count;
		}
}

static int load_from_reader(struct profile *p, struct stream_reader *r, char *err, size_t errlen)
{
	uint16_t type;
	const unsigned char *pl;
	uint32_t len;
	int rc;
	bool first = true;
	while ((rc = stream_reader__next(r, &type, &pl, &len)) == 1) {
		size_t off = r->off - len - KILN_REC_HEADER;
		if (first && type != REC_META)
			return corrupt(err, errlen, "first (not meta)", off);
		first = false;
		if (p->complete)
			return corrupt(err, errlen, "trailing", off);
		if (decode(p, type, pl, len, off, err, errlen) < 0)
			return -1;
	}
	if (rc < 0) {
		snprintf(err, errlen, "%s", r->err);
		return -1;
	}
	if (first) {
		snprintf(err, errlen, "%s", r->status == STREAM_TRUNCATED ? r->err : "no records (an empty profile)");
		if (r->status == STREAM_TRUNCATED)
			snprintf(err, errlen, "cut short before any data could be read");
		return -1;
	}
	if (r->status == STREAM_TRUNCATED || !p->complete) {
		snprintf(p->warning, sizeof(p->warning), "%.200s; the recording was interrupted, showing what was written before",
			 r->status == STREAM_TRUNCATED ? r->err : "no end record");
	}
	for (size_t i = 0; i < p->ncells; i++)
		for (int m = 0; m < KM__COUNT; m++)
			if (p->cells[i].v[m])
				p->has[m] = true;
	profile_name_functions(p);
	if (!p->samples)
		for (size_t i = 0; i < p->ncells; i++)
			p->samples += (uint64_t)sat_add(p->cells[i].v[KM_CPU], p->cells[i].v[KM_WALL]);
	profile_number_in_order(p);
	return 0;
}

static void profile_init(struct profile *p)
{
	memset(p, 0, sizeof(*p));
	intern__init(&p->strings);
	intern__init(&p->cellkeys);
	p->str_empty = intern__str(&p->strings, "");
	p->str_unknown = intern__str(&p->strings, "[unknown]");
	p->str_truncated = intern__str(&p->strings, "[truncated]");
	p->kind = "profile";
	p->program = "";
	marker_frame.func = p->str_truncated;
	marker_frame.file = p->str_empty;
	marker_frame.module = UINT32_MAX;
	marker_frame.kind = FK_MARKER;
	marker_frame.name = marker_frame.func;
	p->str_native = intern__str(&p->strings, "[native]");
	native_frame = marker_frame;
	native_frame.func = p->str_native;
	native_frame.name = native_frame.func;
}

int profile__load(struct profile *p, const char *path, char *err, size_t errlen)
{
	profile_init(p);
	p->path = xstrdup(path);
	struct stream_reader r;
	int rc = stream_reader__open(&r, path);
	if (rc == 0)
		rc = load_from_reader(p, &r, err, errlen);
	else
		snprintf(err, errlen, "%s", r.err);
	stream_reader__release(&r);
	return rc;
}

int profile__load_mem(struct profile *p, const void *data, size_t n, char *err, size_t errlen)
{
	profile_init(p);
	p->path = xstrdup("<memory>");
	struct stream_reader r;
	int rc = stream_reader__open_mem(&r, data, n);
	if (rc == 0)
		rc = load_from_reader(p, &r, err, errlen);
	else
		snprintf(err, errlen, "%s", r.err);
	stream_reader__release(&r);
	return rc;
}

void profile__release(struct profile *p)
{
	json_decref(p->meta);
	for (size_t i = 0; i < p->nmodules; i++) {
		free(p->modules[i].path);
		free(p->modules[i].build_id);
	}
	for (size_t i = 0; i < p->nlocs; i++) {
		free(p->locs[i].frames);
		free(p->locs[i].tail);
	}
	for (size_t i = 0; i < p->nstacks; i++)
		free(p->stacks[i].locs);
	for (size_t i = 0; i < p->nprocs; i++) {
		free(p->procs[i].name);
		free(p->procs[i].exe);
	}
	for (size_t i = 0; i < p->nthreads; i++)
		free(p->threads[i].name);
	free(p->modules);
	free(p->locs);
	free(p->stacks);
	free(p->procs);
	free(p->threads);
	free(p->cells);
	free(p->losses);
	free(p->points);
	free(p->slows);
	free(p->wins);
	free(p->wents);
	free(p->path);
	intern__release(&p->strings);
	intern__release(&p->cellkeys);
	u64map__release(&p->procidx);
	u64map__release(&p->lossidx);
	u64map__release(&p->thridx);
	memset(p, 0, sizeof(*p));
}

int profile__default_metric(const struct profile *p)
{
	if (!strcmp(p->kind, "snapshot"))
		return KM_LIVE_BYTES;
	if (p->has[KM_CPU])
		return KM_CPU;
	if (p->has[KM_WALL])
		return KM_WALL;
	if (p->ranged)
		return KM_LIVE_BYTES;
	if (p->has[KM_ALLOC_COUNT])
		return KM_LEAK_BYTES;
	return KM_CPU;
}

size_t profile__stack_frames(const struct profile *p, uint32_t stack, const struct pframe **out, size_t max)
{
	size_t n = 0;
	if (stack >= p->nstacks)
		return 0;
	const struct pstack *s = &p->stacks[stack];
	if ((s->flags & STACK_TRUNCATED) && n < max)
		out[n++] = &marker_frame;
	for (int i = (int)s->depth - 1; i >= 0; i--) {
		const struct ploc *l = &p->locs[s->locs[i]];
		for (int k = (int)l->nframes - 1; k >= 0 && n < max; k--)
			out[n++] = &l->frames[k];
		if (!l->ntail)
			continue;
		/* tail-call frames, down to (not including) the deeper frame the
		 * call really reached */
		uint32_t stop = UINT32_MAX;
		if (i > 0) {
			const struct ploc *d = &p->locs[s->locs[i - 1]];
			stop = d->frames[d->nframes - 1].func;
			if (d->frames[d->nframes - 1].kind == FK_PYTHON)
				continue; /* the call entered the interpreter's loop, which its Python frames stand for */
		}
		for (int k = (int)l->ntail - 1; k >= 0 && n < max; k--) {
			if (l->tail[k].func == stop)
				break;
			out[n++] = &l->tail[k];
		}
	}
	if (p->python_only) {
		size_t k = 0;
		for (size_t i = 0; i < n; i++)
			if (out[i]->kind == FK_PYTHON || out[i] == &marker_frame)
				out[k++] = out[i];
		if (k == 0 || (k == 1 && out[0] == &marker_frame))
			out[k++] = &native_frame;
		n = k;
	}
	return n;
}

const struct pprocess *profile__process(const struct profile *p, uint32_t pid)
{
	struct u64map_ent *e = u64map__find((struct u64map *)&p->procidx, (uint64_t)pid);
	return e ? &p->procs[e->v1 - 1] : NULL;
}

const struct pthread *profile__thread(const struct profile *p, uint32_t pid, uint32_t tid)
{
	struct u64map_ent *e = u64map__find((struct u64map *)&p->thridx, ((uint64_t)pid << 32) | tid);
	return e ? &p->threads[e->v1 - 1] : NULL;
}

const char *profile__process_name(const struct profile *p, uint32_t pid)
{
	const struct pprocess *pr = profile__process(p, pid);
	if (pr && pr->exe && *pr->exe)
		return path_base(pr->exe);
	if (pr && pr->name && *pr->name)
		return pr->name;
	return *p->program ? path_base(p->program) : "process";
}

double profile__duration(const struct profile *p)
{
	uint64_t end = p->end_ns;
	if (!end)
		for (size_t i = 0; i < p->nprocs; i++)
			if (p->procs[i].end_ns > end)
				end = p->procs[i].end_ns;
	if (!end || (!p->complete && p->last_ns > end))
		end = p->last_ns; /* cut short: as far as its last flush */
	if (!end || end < p->start_ns)
		return 0;
	return (double)(end - p->start_ns) / 1e9;
}
