/* The recorder's tables (see recorder.h): the recorder's files keep the
 * tables that name things (processes, maps, locations, stacks, cells) and
 * write them (recorder_int.h says which file does what; heap accounting is
 * collect/heap.c's). This one keeps the processes, threads and cells, and
 * follows fork, exec and exit. */
#include <string.h>
#include <unistd.h>
#include "collect/preload.h"
#include "collect/unwind.h"
#include "collect/recorder_int.h"

struct rproc *recorder_proc_find(struct recorder *r, uint32_t pid)
{
	struct u64map_ent *e = u64map__find(&r->procidx, (uint64_t)pid);
	return e ? r->procs[e->v1] : NULL;
}

bool recorder__known(struct recorder *r, uint32_t pid)
{
	return recorder_proc_find(r, pid) != NULL;
}

/* Name and executable of a process; what cannot be read (the process is
 * gone) stays as it was. */
static void read_exe(struct rproc *p)
{
	char path[64], buf[4096];
	snprintf(path, sizeof(path), "/proc/%u/exe", p->pid);
	ssize_t n = readlink(path, buf, sizeof(buf) - 1);
	if (n > 0) {
		buf[n] = 0;
		free(p->exe);
		p->exe = xstrdup(buf);
	}
	snprintf(path, sizeof(path), "/proc/%u/comm", p->pid);
	char *c = read_small_file(path, NULL);
	if (c) {
		c[strcspn(c, "\n")] = 0;
		snprintf(p->comm, sizeof(p->comm), "%s", c);
		free(c);
	}
}

struct rproc *recorder__proc(struct recorder *r, uint32_t pid)
{
	struct rproc *p = recorder_proc_find(r, pid);
	if (p)
		return p;
	p = xcalloc(1, sizeof(*p));
	intern__init(&p->pyframes);
	p->pid = pid;
	p->dirty = true;
	p->status = -1;
	p->start_ns = realtime_ns();
	p->idx = (uint32_t)r->nprocs;
	read_exe(p);
	ARR_GROW(r->procs, r->cprocs, r->nprocs + 1);
	r->procs[r->nprocs] = p;
	u64map__upsert(&r->procidx, (uint64_t)pid, NULL)->v1 = r->nprocs;
	r->nprocs++;
	return p;
}

void recorder_flush_unwind(struct rproc *p)
{
	if (p->as)
		unw_flush_cache(p->as, 0, 0);
}

void recorder__fork(struct recorder *r, uint32_t pid, uint32_t ppid)
{
	struct rproc *parent = recorder_proc_find(r, ppid);
	struct rproc *p = recorder__proc(r, pid);
	p->ppid = ppid;
	p->dirty = true;
	if (parent && parent != p && !p->nmaps) {
		if (parent->nmaps) { /* none yet: nothing to copy (and no memcpy from NULL) */
			ARR_GROW(p->maps, p->cmaps, parent->nmaps);
			memcpy(p->maps, parent->maps, parent->nmaps * sizeof(*p->maps));
			p->nmaps = parent->nmaps;
		}
		if (!p->exe && parent->exe)
			p->exe = xstrdup(parent->exe);
		if (!p->comm[0])
			memcpy(p->comm, parent->comm, sizeof(p->comm));
		if (parent->py && !p->py)
			recorder_python_detect(r, p, parent->py_img, parent->py_bias);
	}
}

/* p's exec needs no more asking (told, or gone, or exec'd anew). */
static void env_settled(struct recorder *r, struct rproc *p)
{
	if (p->env_recheck) {
		p->env_recheck = 0;
		r->env_pending--;
	}
}

/* Can the image p just exec'd carry the shim? An environment the kernel has
 * not written yet (preload.h) is asked again at each tick (recorder__tick);
 * one still empty after 200 ms is empty indeed: cleared. */
static void heap_check(struct recorder *r, struct rproc *p, uint64_t now)
{
	int cause = preload__untracked(p->pid);
	if (cause == PRELOAD_NOT_YET) {
		if (!p->env_recheck) {
			p->env_recheck = now;
			r->env_pending++;
			return;
		}
		if (now - p->env_recheck <= 200000000ull)
			return;
		cause = HL_ENV_CLEARED;
	}
	env_settled(r, p);
	if (cause >= 0)
		recorder__heap_loss(r, p->pid, cause, 1);
}

void recorder__exec(struct recorder *r, uint32_t pid, const char *comm)
{
	/* Only the maps: the old image's heap ends when heapsrc has drained
	 * its rings (frees it made just before exec may still be in them). */
	struct rproc *p = recorder__proc(r, pid);
	p->nmaps = 0;
	p->last_hit = 0;
	recorder_flush_unwind(p);
	recorder_python_forget(p);
	if (comm) {
		snprintf(p->comm, sizeof(p->comm), "%s", comm);
		free(p->exe); /* the old image's: replaced below if /proc still tells */
		p->exe = NULL;
	}
	read_exe(p);
	p->dirty = true;
	if (r->heap_on) {
		env_settled(r, p); /* an earlier exec's question is moot */
		heap_check(r, p, now_ns());
	}
}


void recorder__set_heap(struct recorder *r, bool on, uint64_t sample)
{
	r->heap_on = on;
	heap__sample(r->heap, sample);
}

json_t *recorder__meta(struct recorder *r)
{
	return r->meta;
}

void recorder__set_kernel_stacks(struct recorder *r, bool on)
{
	json_object_set_new(r->meta, "kernel_stacks", json_boolean(on));
}

void recorder__exit(struct recorder *r, uint32_t pid, int status)
{
	struct rproc *p = recorder__proc(r, pid);
	if (p->exited)
		return;
	p->exited = true;
	r->nexited++;
	env_settled(r, p); /* gone before its environment could be read */
	p->status = status;
	p->end_ns = realtime_ns();
	p->dirty = true;
	timeline__forget(r->tl, pid);
}

/* A point of the timeline: every live process's heap (the most live since
 * the last point) and RSS; a process that ended gets one last entry while
 * its heap still had something to show; pid 0 is all of them together. */
void recorder_timeline_point(struct recorder *r, uint64_t now)
{
	uint64_t rss_all = 0;
	bool any = false;
	for (size_t i = 0; i < r->nprocs; i++) {
		struct rproc *p = r->procs[i];
		if (p->tl_done)
			continue;
		int64_t heap = r->heap_on ? heap__window(r->heap, p->idx) : TIMELINE_NO_HEAP;
		uint64_t rss = p->exited ? TIMELINE_NO_RSS : timeline__rss(r->tl, p->pid);
		if (!p->exited && rss == TIMELINE_NO_RSS && heap <= 0)
			continue; /* gone before we were told (or never readable): nothing to say */
		if (p->exited) {
			p->tl_done = true;
			if (heap <= 0)
				continue;
		}
		timeline__add(r->tl, p->pid, heap, rss);
		if (rss != TIMELINE_NO_RSS) {
			rss_all += rss;
			any = true;
		}
	}
	if (r->heap_on || any)
		timeline__add(r->tl, 0, r->heap_on ? heap__window(r->heap, HEAP_ALL) : TIMELINE_NO_HEAP,
			      any ? rss_all : TIMELINE_NO_RSS);
	timeline__write(r->tl, r->w, now);
}

static void window_key(void *arg, uint32_t cell, struct rec_count *e)
{
	const struct rcell *c = &((struct recorder *)arg)->cells[cell];
	e->pid = c->pid;
	e->tid = c->tid;
	e->stack = c->stack;
}

void recorder_window_cut(struct recorder *r, uint64_t now)
{
	windows__cut(r->win, now, r->heap, window_key, r);
}

/* Now, as the timeline and the windows see it: events drained after the
 * recording stopped were made before it. */
uint64_t recorder_now(const struct recorder *r)
{
	uint64_t now = now_ns();
	return r->stop_mono && now > r->stop_mono ? r->stop_mono : now;
}

void recorder__stopped(struct recorder *r)
{
	if (!r->stop_mono) {
		r->stop_mono = now_ns();
		r->stop_real = realtime_ns();
	}
}

void recorder__tick(struct recorder *r)
{
	uint64_t now = recorder_now(r);
	for (size_t i = 0; r->env_pending && i < r->nprocs; i++)
		if (r->procs[i]->env_recheck)
			heap_check(r, r->procs[i], now);
	if (timeline__due(r->tl, now, r->nprocs - r->nexited))
		recorder_timeline_point(r, now);
	if (windows__due(r->win, now))
		recorder_window_cut(r, now);
}

static struct rthread *thread_get(struct recorder *r, uint32_t pid, uint32_t tid)
{
	bool created;
	struct u64map_ent *e = u64map__upsert(&r->threads, ((uint64_t)pid << 32) | tid, &created);
	if (created) {
		ARR_GROW(r->thr, r->cthr, r->nthr + 1);
		struct rthread *t = &r->thr[r->nthr];
		memset(t, 0, sizeof(*t));
		t->pid = pid;
		t->tid = tid;
		char path[96];
		snprintf(path, sizeof(path), "/proc/%u/task/%u/comm", pid, tid);
		char *c = read_small_file(path, NULL);
		if (c) {
			c[strcspn(c, "\n")] = 0;
			snprintf(t->name, sizeof(t->name), "%s", c);
			free(c);
		}
		t->dirty = true;
		e->v1 = r->nthr++;
	}
	return &r->thr[e->v1];
}

void recorder__thread_name(struct recorder *r, uint32_t pid, uint32_t tid, const char *name)
{
	struct rthread *t = thread_get(r, pid, tid);
	if (strcmp(t->name, name)) {
		snprintf(t->name, sizeof(t->name), "%s", name);
		t->dirty = true;
	}
}

void recorder__meta_changed(struct recorder *r)
{
	r->meta_dirty = true;
}

void recorder__waits_ended(struct recorder *r, uint64_t n)
{
	if (!n)
		return;
	json_int_t was = json_integer_value(json_object_get(json_object_get(r->meta, "waits_ended"), "timed"));
	json_object_set_new(r->meta, "waits_ended", json_pack("{s:I}", "timed", was + (json_int_t)n));
	r->meta_dirty = true;
}

uint64_t recorder__unknown_frees(struct recorder *r, uint32_t pid)
{
	struct rproc *p = recorder_proc_find(r, pid);
	return p ? heap__unknown_frees(r->heap, p->idx) : 0;
}

void recorder__heap_unmatched(struct recorder *r, uint64_t *frees, uint64_t *over_live)
{
	*frees = *over_live = 0;
	for (size_t i = 0; i < r->nprocs; i++) {
		*frees += heap__unknown_frees(r->heap, r->procs[i]->idx);
		*over_live += heap__over_live(r->heap, r->procs[i]->idx);
	}
}

static struct rcell *cell_get(struct recorder *r, uint32_t pid, uint32_t tid, uint32_t stack)
{
	uint32_t key[3] = {pid, tid, stack};
	bool added;
	uint32_t id = intern__put(&r->cellkeys, key, sizeof(key), &added);
	if (added) {
		uint32_t thr = (uint32_t)(thread_get(r, pid, tid) - r->thr);
		ARR_GROW(r->cells, r->ccells, id + 1);
		r->cells[id].pid = pid;
		r->cells[id].tid = tid;
		r->cells[id].stack = stack;
		r->cells[id].thr = thr;
		r->cells[id].proc = recorder__proc(r, pid);
	}
	return &r->cells[id];
}

uint32_t recorder__cell(struct recorder *r, uint32_t pid, uint32_t tid, uint32_t stack)
{
	struct rcell *c = cell_get(r, pid, tid, stack);
	uint32_t id = (uint32_t)(c - r->cells);
	heap__cell(r->heap, id, c->proc->idx, c->thr);
	return id;
}

void recorder__charge(struct recorder *r, uint32_t pid, uint32_t tid, uint32_t stack, int metric, int64_t delta)
{
	struct rcell *c = cell_get(r, pid, tid, stack);
	c->v[metric] += delta;
	if (metric == KM_CPU || metric == KM_WALL)
		windows__sample(r->win, (uint32_t)(c - r->cells), metric, delta);
	thread_get(r, pid, tid);
}

void recorder__count(struct recorder *r, uint32_t pid, uint32_t tid, uint32_t stack, int metric, int64_t delta)
{
	recorder__charge(r, pid, tid, stack, metric, delta);
	if (metric == KM_CPU || metric == KM_WALL)
		r->samples += (uint64_t)delta;
}

void recorder__free_in(struct recorder *r, struct rproc *p, uint64_t addr)
{
	if (p->py_final) {
		p->py_after_final++;
		return;
	}
	heap__free_block(r->heap, p->idx, addr);
}

void recorder__alloc_cell(struct recorder *r, uint32_t cid, uint64_t addr, uint64_t size)
{
	if (r->cells[cid].proc && r->cells[cid].proc->py_final) {
		r->cells[cid].proc->py_after_final++;
		return;
	}
	heap__alloc(r->heap, cid, addr, size);
}

void recorder__python_final(struct recorder *r, uint32_t pid)
{
	struct rproc *p = recorder__proc(r, pid);
	if (p->py_final)
		return;
	heap__end(r->heap, p->idx);
	p->py_final = true;
	r->meta_dirty = true;
}

void recorder__heap_end(struct recorder *r, uint32_t pid)
{
	struct rproc *p = recorder_proc_find(r, pid);
	if (!p)
		return;
	/* a point just before the image ends: its last heap is never merged
	 * into the next image's window */
	recorder_timeline_point(r, recorder_now(r));
	heap__end(r->heap, p->idx);
}

void recorder__heap_loss(struct recorder *r, uint32_t pid, int cause, uint64_t n)
{
	if (cause < 0 || cause >= HL__COUNT)
		return;
	struct rproc *p = recorder__proc(r, pid);
	if (kiln_heap_loss__is_process(cause))
		p->heap_loss[cause] = 1; /* a process is untracked once */
	else
		p->heap_loss[cause] += n;
	p->loss_dirty = true;
}

bool recorder__untracked(const struct recorder *r, size_t *it, uint32_t *pid, const char **comm, int *cause)
{
	for (; *it < r->nprocs * HL__COUNT; (*it)++) {
		const struct rproc *p = r->procs[*it / HL__COUNT];
		int c = (int)(*it % HL__COUNT);
		if (kiln_heap_loss__is_process(c) && p->heap_loss[c]) {
			*pid = p->pid;
			*comm = p->comm[0] ? p->comm : "?";
			*cause = c;
			(*it)++;
			return true;
		}
	}
	return false;
}

uint64_t recorder__heap_lost(const struct recorder *r)
{
	uint64_t n = 0;
	for (size_t i = 0; i < r->nprocs; i++)
		for (int c = 0; c < HL__COUNT; c++)
			if (!kiln_heap_loss__is_process(c))
				n += r->procs[i]->heap_loss[c];
	return n;
}

void recorder__lost(struct recorder *r, uint64_t n)
{
	r->lost += n;
}

uint64_t recorder__lost_samples(const struct recorder *r)
{
	return r->lost;
}

uint64_t recorder__samples(const struct recorder *r)
{
	return r->samples;
}

struct recorder *recorder__new(struct stream_writer *w, json_t *meta)
{
	struct recorder *r = xcalloc(1, sizeof(*r));
	r->w = w;
	r->meta = json_incref(meta);
	u64map__init(&r->procidx);
	u64map__init(&r->threads);
	intern__init(&r->modkeys);
	intern__init(&r->imgkeys);
	intern__init(&r->locs);
	intern__init(&r->stacks);
	intern__init(&r->cellkeys);
	intern__init(&r->pynames);
	buf__init(&r->scratch);
	r->heap = heap__new();
	r->tl = timeline__new(now_ns());
	r->win = windows__new(now_ns());
	return r;
}

void recorder__free(struct recorder *r)
{
	if (!r)
		return;
	free(r->py_reader);
	image__prefetch_stop();
	for (size_t i = 0; i < r->nprocs; i++) {
		struct rproc *p = r->procs[i];
		if (p->as)
			unwind__free_as(p->as);
		for (size_t k = 0; k < p->njit; k++)
			free(p->jit[k].name);
		free(p->jit);
		free(p->maps);
		free(p->exe);
		pyproc__free(p->py);
		intern__release(&p->pyframes);
		free(p->pyframe_loc);
		free(p);
	}
	for (size_t i = 0; i < r->nmods; i++)
		free(r->mods[i].path);
	for (size_t i = 0; i < r->imgkeys.n; i++)
		image__free(r->imgs[i]);
	image__free(r->vdso);
	for (size_t i = 0; i < r->clocsyms; i++)
		buf__release(&r->locsyms[i]);
	free(r->locsyms);
	free(r->unsym);
	free(r->imgs);
	free(r->procs);
	free(r->mods);
	free(r->cells);
	free(r->thr);
	u64map__release(&r->procidx);
	u64map__release(&r->threads);
	intern__release(&r->modkeys);
	intern__release(&r->imgkeys);
	intern__release(&r->locs);
	intern__release(&r->stacks);
	intern__release(&r->cellkeys);
	intern__release(&r->pynames);
	buf__release(&r->scratch);
	heap__free(r->heap);
	timeline__free(r->tl);
	windows__free(r->win);
	for (size_t i = 0; i < r->nslow; i++)
		free(r->slow[i].task);
	free(r->slow);
	ksyms__free(r->ksyms);
	json_decref(r->meta);
	free(r);
}
