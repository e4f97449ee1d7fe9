/* The recorder's writing: each table's new entries as records at a flush
 * (modules, locations, stacks, processes, threads, cells as absolute
 * counts), locations symbolized in the background within a time budget
 * and named quickly before, JIT names from the program's perf map, and
 * the last flush, finish and snapshots. The perf map is opened as
 * untrusted: never blocking, never through a symlink. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "collect/recorder_int.h"

/* ---- symbolization and writing ---- */

/* JIT code: /tmp/perf-PID.map lines "START SIZE name" (hex, hex). Anyone
 * may create that name in /tmp, so it is read once per process, without
 * blocking or following a symlink, only if it is a regular file of at most
 * 64 MiB owned by the process's user or root; names are cut at 512 bytes. */
#define JIT_MAP_MAX (64u << 20)

static int jit_cmp(const void *a, const void *b)
{
	const struct jit_sym *x = a, *y = b;
	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	return x->order < y->order ? -1 : x->order > y->order;
}

static void jit_read(struct rproc *p)
{
	p->jit_read = true;
	char path[64];
	snprintf(path, sizeof(path), "/tmp/perf-%u.map", p->pid);
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return;
	struct stat st, pst;
	char proc[32];
	snprintf(proc, sizeof(proc), "/proc/%u", p->pid);
	bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size <= JIT_MAP_MAX &&
		  stat(proc, &pst) == 0 && (st.st_uid == 0 || st.st_uid == pst.st_uid);
	FILE *f = ok ? fdopen(fd, "re") : NULL;
	if (!f) {
		close(fd);
		return;
	}
	char line[1024];
	size_t cap = 0, read_bytes = 0;
	while (read_bytes < JIT_MAP_MAX && fgets(line, sizeof(line), f)) {
		size_t len = strlen(line);
		read_bytes += len;
		bool whole = len && line[len - 1] == '\n';
		if (!whole) { /* a longer line: skip its rest */
			int ch;
			while ((ch = fgetc(f)) != EOF && ch != '\n')
				read_bytes++;
		}
		unsigned long long s, sz;
		int pos = 0;
		if (sscanf(line, "%llx %llx %n", &s, &sz, &pos) < 2 || pos <= 0 || !sz || s + sz < s)
			continue;
		line[strcspn(line, "\n")] = 0;
		if (!line[pos])
			continue;
		ARR_GROW(p->jit, cap, p->njit + 1);
		p->jit[p->njit].start = s;
		p->jit[p->njit].end = s + sz;
		p->jit[p->njit].name = xstrndup(line + pos, 512);
		p->njit++;
	}
	fclose(f);
	/* later lines win (code may be regenerated): sorted by start, then
	 * file order, the lookup takes the last that covers an address */
	for (size_t i = 0; i < p->njit; i++)
		p->jit[i].order = (uint32_t)i;
	sort_array(p->jit, p->njit, sizeof(*p->jit), jit_cmp);
}

static const char *jit_name(struct recorder *r, uint32_t pid, uint64_t addr)
{
	struct rproc *p = recorder_proc_find(r, pid);
	if (!p)
		return NULL;
	if (!p->jit_read)
		jit_read(p);
	/* the last entry starting at or below addr that covers it */
	for (size_t i = upper_bound_u64(p->jit, p->njit, sizeof(*p->jit), addr); i-- > 0;) {
		if (addr < p->jit[i].end)
			return p->jit[i].name;
		if (p->jit[i].start + (64u << 20) < addr)
			break; /* no JIT block is that large */
	}
	return NULL;
}

static void encode_sym(struct recorder *r, uint32_t loc, struct buf *b)
{
	uint32_t klen;
	const struct {
		uint32_t module, flags;
		uint64_t addr;
	} *key = intern__key(&r->locs, loc, &klen);
	struct rmodule *m = &r->mods[key->module];
	struct sym_frame fr[32];
	int n = 0;
	uint32_t line, def_line = 0;
	uint64_t a = key->addr - ((key->flags & LOC_RETADDR) ? 1 : 0);
	if (m->img)
		n = image__symbolize(m->img, a, (key->flags & LOC_RETADDR) ? key->addr : 0, fr, 32);
	else if (m->kind == MOD_KERNEL) {
		if (!r->ksyms_tried) {
			r->ksyms = ksyms__load();
			r->ksyms_tried = true;
		}
		const char *name = ksyms__name(r->ksyms, a);
		if (name) { /* _[k], as FlameGraph marks kernel frames */
			size_t len = strlen(name);
			fr[0].func = xmalloc(len + 5);
			memcpy(fr[0].func, name, len);
			memcpy(fr[0].func + len, "_[k]", 5);
			fr[0].file = xstrdup("");
			fr[0].line = 0;
			fr[0].inlined = false;
			n = 1;
		}
	} else if (m->kind == MOD_PYTHON) {
		uint32_t len;
		const char *k = intern__key(&r->pynames, (uint32_t)key->addr, &len);
		size_t fl = strlen(k) + 1, il = strlen(k + fl) + 1;
		memcpy(&line, k + fl + il, 4);
		memcpy(&def_line, k + fl + il + 4, 4);
		fr[0].func = xstrdup(k);
		fr[0].file = xstrdup(k + fl);
		fr[0].line = line;
		fr[0].inlined = false;
		n = 1;
	} else if (m->kind == MOD_ANON) {
		const char *name = jit_name(r, m->pid, a);
		if (name) {
			fr[0].func = xstrdup(name);
			fr[0].file = xstrdup("");
			fr[0].line = 0;
			fr[0].inlined = false;
			n = 1;
		}
	}
	b->len = 0;
	if (n <= 0)
		return;
	rec_sym__begin(b, loc, (uint16_t)n);
	for (int i = 0; i < n; i++) {
		rec_sym__frame(b, fr[i].func, fr[i].file, fr[i].line, fr[i].inlined);
		sym_frame__release(&fr[i]);
	}
	if (def_line)
		rec_sym__def_lines(b, &def_line, 1);
}

static void write_meta(struct recorder *r, struct stream_writer *w, json_t *meta)
{
	char *s = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS);
	stream_writer__record(w, REC_META, s, strlen(s));
	free(s);
}

static void write_module(struct recorder *r, struct stream_writer *w, uint32_t id)
{
	struct buf *b = &r->scratch;
	struct rmodule *m = &r->mods[id];
	b->len = 0;
	rec_module__encode(b, id, m->kind, m->pid, m->path, m->img ? m->img->build_id : "");
	stream_writer__record(w, REC_MODULE, b->data, b->len);
}

static void write_loc(struct recorder *r, struct stream_writer *w, uint32_t id)
{
	struct buf *b = &r->scratch;
	const struct {
		uint32_t module, flags;
		uint64_t addr;
	} *key = intern__key(&r->locs, id, NULL);
	b->len = 0;
	rec_loc__encode(b, &(struct rec_loc){.id = id, .module = key->module, .addr = key->addr, .flags = (uint8_t)key->flags});
	stream_writer__record(w, REC_LOC, b->data, b->len);
}

static void write_sym(struct recorder *r, struct stream_writer *w, uint32_t id)
{
	if (id < r->clocsyms && r->locsyms[id].len)
		stream_writer__record(w, REC_SYM, r->locsyms[id].data, r->locsyms[id].len);
}

/* Whether naming loc would wait for its image's DWARF, still loading. */
/* over: the flush's budget for reading debug information is spent.
 * Locations without an image (Python, kernel, JIT) are named at no cost. */
static bool loc_waits(struct recorder *r, uint32_t loc, bool over)
{
	const struct {
		uint32_t module, flags;
		uint64_t addr;
	} *key = intern__key(&r->locs, loc, NULL);
	struct image *img = r->mods[key->module].img;
	return img && (over || image__loading(img));
}

/* A first name for loc while its image's DWARF loads: the function from the
 * ELF symbol table, written as a SYM record the full one replaces later. */
static void quick_sym(struct recorder *r, struct stream_writer *w, uint32_t loc)
{
	const struct {
		uint32_t module, flags;
		uint64_t addr;
	} *key = intern__key(&r->locs, loc, NULL);
	struct image *img = r->mods[key->module].img;
	char *name = image__quick_name(img, key->addr - ((key->flags & LOC_RETADDR) ? 1 : 0));
	if (!name)
		return;
	struct buf *b = &r->scratch;
	b->len = 0;
	rec_sym__begin(b, loc, 1);
	rec_sym__frame(b, name, "", 0, 0);
	stream_writer__record(w, REC_SYM, b->data, b->len);
	free(name);
}

/* Symbolize the locations waiting for it: those whose image is ready, all
 * of them when wait is set (the final flush). A flush never waits for the
 * prefetch worker (it runs at low priority while the program runs, and the
 * recorder must keep draining): a location whose image is still loading is
 * named at once from the ELF symbol table, and fully (inlines, file:line)
 * at a later flush. So a recorder killed after its first flush still names
 * what it wrote. */
#define SYMBOLIZE_BUDGET_NS 30000000ull /* of a flush that does not wait: the loop drains again soon */

static void symbolize_pending(struct recorder *r, struct stream_writer *w, bool wait)
{
	size_t k = 0;
	if (wait && r->nunsym)
		image__prefetch_hurry();
	uint64_t t0 = now_ns();
	bool over = false;
	for (size_t i = 0; i < r->nunsym; i++) {
		uint32_t loc = r->unsym[i];
		/* a large debug file (a compiler's, libpython's) costs seconds to
		 * read whole: past the budget the rest waits for a later flush,
		 * named from the ELF symbol table meanwhile */
		if (!wait && !over && (i & 15) == 0 && now_ns() - t0 > SYMBOLIZE_BUDGET_NS)
			over = true;
		if (!wait && loc_waits(r, loc, over)) {
			if (i >= r->unsym_quick) /* named quickly once, not at every flush */
				quick_sym(r, w, loc);
			r->unsym[k++] = loc;
			continue;
		}
		encode_sym(r, loc, &r->locsyms[loc]);
		write_sym(r, w, loc);
	}
	r->nunsym = r->unsym_quick = k;
}

static void write_stack(struct recorder *r, struct stream_writer *w, uint32_t id)
{
	struct buf *b = &r->scratch;
	const uint32_t *key = intern__key(&r->stacks, id, NULL);
	b->len = 0;
	rec_stack__encode(b, id, (uint16_t)key[0], (uint16_t)key[1], key + 2);
	stream_writer__record(w, REC_STACK, b->data, b->len);
}

static void write_process(struct recorder *r, struct stream_writer *w, struct rproc *p)
{
	struct buf *b = &r->scratch;
	b->len = 0;
	rec_process__encode(b, p->pid, p->ppid, p->start_ns, p->comm, p->exe);
	stream_writer__record(w, REC_PROCESS, b->data, b->len);
	if (p->exited) {
		b->len = 0;
		rec_exit__encode(b, &(struct rec_exit){.pid = p->pid, .status = p->status, .end_ns = p->end_ns});
		stream_writer__record(w, REC_EXIT, b->data, b->len);
	}
}

static void write_thread(struct recorder *r, struct stream_writer *w, struct rthread *t)
{
	struct buf *b = &r->scratch;
	b->len = 0;
	rec_thread__encode(b, t->pid, t->tid, t->name);
	stream_writer__record(w, REC_THREAD, b->data, b->len);
}

static void write_heap_loss(struct recorder *r, struct stream_writer *w, struct rproc *p)
{
	struct buf *b = &r->scratch;
	for (int c = 0; c < HL__COUNT; c++) {
		if (!p->heap_loss[c])
			continue;
		b->len = 0;
		rec_heap_loss__encode(b, &(struct rec_heap_loss){.pid = p->pid, .cause = (uint8_t)c, .count = p->heap_loss[c]});
		stream_writer__record(w, REC_HEAP_LOSS, b->data, b->len);
	}
}

/* The values a cell shows now (heap ones derived from the live state). */
static void cell_values(struct recorder *r, struct rcell *c, int64_t *v)
{
	memcpy(v, c->v, sizeof(c->v));
	heap__values(r->heap, (uint32_t)(c - r->cells), v);
	for (int m = 0; m < KM__COUNT; m++)
		if (v[m] < 0) /* only forged events get here: never write what no reader takes */
			v[m] = 0;
}

/* COUNTS records, batched (at most 100,000 entries a record). */
struct counts {
	struct stream_writer *w;
	struct buf b;
};

static void counts_flush(struct counts *k)
{
	if (rec_counts__n(&k->b))
		stream_writer__record(k->w, REC_COUNTS, k->b.data, k->b.len);
	rec_counts__begin(&k->b);
}

static void counts_init(struct counts *k, struct stream_writer *w)
{
	k->w = w;
	buf__init(&k->b);
	rec_counts__begin(&k->b);
}

static void counts_add(struct counts *k, const struct rcell *c, int metric, int64_t v)
{
	rec_counts__add(&k->b, &(struct rec_count){c->pid, c->tid, c->stack, (uint8_t)metric, v});
	if (rec_counts__n(&k->b) == 100000)
		counts_flush(k);
}

static void counts_release(struct counts *k)
{
	counts_flush(k);
	buf__release(&k->b);
}

/* The loop-blocking stretches recorded since the last flush, a SLOW record
 * each (their stacks are written before them). */
static void write_slow(struct recorder *r, struct stream_writer *w)
{
	for (size_t i = 0; i < r->nslow; i++) {
		r->scratch.len = 0;
		rec_slow__encode(&r->scratch, &r->slow[i]);
		stream_writer__record(w, REC_SLOW, r->scratch.data, r->scratch.len);
		free(r->slow[i].task);
	}
	r->nslow = 0;
}

/* META "python": each interpreter found, by pid, with how many stacks were
 * merged with its Python frames and how many could not be: "unmerged" (the
 * frames disagreed with the native stack, or the thread had moved on) and
 * "unread" (no Python thread state to read, e.g. the process had ended). */
static void python_meta(struct recorder *r)
{
	json_t *o = json_object();
	for (size_t i = 0; i < r->nprocs; i++) {
		struct rproc *p = r->procs[i];
		if (!p->py)
			continue;
		char k[16];
		snprintf(k, sizeof(k), "%u", p->pid);
		json_t *one = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:b, s:I}", "version", pyproc__version(p->py),
						    "merged", (json_int_t)p->py_merged, "unmerged",
						    (json_int_t)p->py_unmerged, "unread", (json_int_t)p->py_unread, "missing", (json_int_t)p->py_missing,
						    "unreadable_frames", (json_int_t)p->py_unreadable,
						    "heap_until_finalization", p->py_final,
						    "heap_events_after", (json_int_t)p->py_after_final);
		if (r->py_reader)
			json_object_set_new(one, "reader", json_string(r->py_reader));
		if (p->py_cyclic)
			json_object_set_new(one, "cyclic_frames", json_integer((json_int_t)p->py_cyclic));
		if (pyproc__cyclic_threads(p->py))
			json_object_set_new(one, "cyclic_threads", json_true());
		json_object_set_new(o, k, one);
	}
	if (r->slows_dropped)
		json_object_set_new(r->meta, "loop_stretches_dropped", json_integer((json_int_t)r->slows_dropped));
	if (json_object_size(o))
		json_object_set_new(r->meta, "python", o);
	else
		json_decref(o);
}

static int flush(struct recorder *r, bool wait);

int recorder__flush(struct recorder *r)
{
	return flush(r, false);
}

static int flush(struct recorder *r, bool wait)
{
	struct stream_writer *w = r->w;
	if (r->meta_dirty) {
		python_meta(r);
		r->meta_dirty = false;
		r->meta_written = false; /* a later META replaces the earlier */
	}
	if (!r->meta_written) {
		write_meta(r, w, r->meta);
		r->meta_written = true;
	}
	for (size_t i = 0; i < r->nmods; i++)
		if (!r->mods[i].written) {
			write_module(r, w, (uint32_t)i);
			r->mods[i].written = true;
		}
	ARR_GROW(r->locsyms, r->clocsyms, r->locs.n);
	for (size_t i = r->locs_written; i < r->locs.n; i++) {
		write_loc(r, w, (uint32_t)i);
		ARR_GROW(r->unsym, r->cunsym, r->nunsym + 1);
		r->unsym[r->nunsym++] = (uint32_t)i;
	}
	r->locs_written = r->locs.n;
	symbolize_pending(r, w, wait);
	for (size_t i = r->stacks_written; i < r->stacks.n; i++)
		write_stack(r, w, (uint32_t)i);
	r->stacks_written = r->stacks.n;
	write_slow(r, w);
	for (size_t i = 0; i < r->nprocs; i++)
		if (r->procs[i]->dirty) {
			write_process(r, w, r->procs[i]);
			r->procs[i]->dirty = false;
		}
	for (size_t i = 0; i < r->nthr; i++)
		if (r->thr[i].dirty) {
			write_thread(r, w, &r->thr[i]);
			r->thr[i].dirty = false;
		}
	struct counts k;
	counts_init(&k, w);
	for (size_t i = 0; i < r->cellkeys.n; i++) {
		struct rcell *c = &r->cells[i];
		int64_t v[KM__COUNT];
		cell_values(r, c, v);
		for (int m = 0; m < KM__COUNT; m++) {
			if (v[m] == c->written[m])
				continue;
			counts_add(&k, c, m, v[m]);
			c->written[m] = v[m];
		}
	}
	counts_release(&k);
	windows__write(r->win, w); /* after the stacks they name */
	for (size_t i = 0; i < r->nprocs; i++)
		if (r->procs[i]->loss_dirty) {
			write_heap_loss(r, w, r->procs[i]);
			r->procs[i]->loss_dirty = false;
		}
	struct buf *b = &r->scratch;
	if (r->lost != r->lost_written) {
		b->len = 0;
		rec_u64__encode(b, r->lost);
		stream_writer__record(w, REC_LOST, b->data, b->len);
		r->lost_written = r->lost;
	}
	b->len = 0;
	rec_u64__encode(b, realtime_ns()); /* how far the recording got, if nothing follows */
	stream_writer__record(w, REC_TIME, b->data, b->len);
	return stream_writer__flush(w);
}

int recorder__finish(struct recorder *r)
{
	for (size_t i = 0; i < r->nprocs; i++)
		if (r->procs[i]->py)
			r->meta_dirty = true; /* the final counts of merged stacks */
	/* the recording's end, not the draining and symbolizing after it */
	uint64_t stopped = r->stop_real ? r->stop_real : realtime_ns();
	uint64_t now = recorder_now(r);
	recorder_timeline_point(r, now); /* the last point: nothing since the one before is lost */
	recorder_window_cut(r, now);
	int rc = flush(r, true);
	if (rc < 0)
		return rc;
	r->scratch.len = 0;
	rec_end__encode(&r->scratch, &(struct rec_end){stopped, r->samples, r->lost});
	stream_writer__record(r->w, REC_END, r->scratch.data, r->scratch.len);
	return stream_writer__flush(r->w);
}

int recorder__snapshot(struct recorder *r, uint32_t pid, struct stream_writer *w)
{
	/* Make sure every location is symbolized, then write a profile of its
	 * own holding just this process's live blocks by stack. */
	struct rproc *p = recorder_proc_find(r, pid);
	if (!p)
		return -ESRCH;
	int rc = flush(r, true);
	if (rc < 0)
		return rc;
	json_t *meta = json_deep_copy(r->meta);
	json_object_set_new(meta, "kind", json_string("snapshot"));
	json_object_set_new(meta, "snapshot_pid", json_integer(pid));
	json_object_set_new(meta, "start_ns", json_integer((json_int_t)realtime_ns()));
	write_meta(r, w, meta);
	json_decref(meta);
	for (size_t i = 0; i < r->nmods; i++)
		write_module(r, w, (uint32_t)i);
	for (size_t i = 0; i < r->locs.n; i++) {
		write_loc(r, w, (uint32_t)i);
		write_sym(r, w, (uint32_t)i);
	}
	for (size_t i = 0; i < r->stacks.n; i++)
		write_stack(r, w, (uint32_t)i);
	bool exited = p->exited;
	p->exited = false;
	write_process(r, w, p);
	p->exited = exited;
	write_heap_loss(r, w, p);
	for (size_t i = 0; i < r->nthr; i++)
		if (r->thr[i].pid == pid)
			write_thread(r, w, &r->thr[i]);
	struct counts k;
	counts_init(&k, w);
	for (size_t i = 0; i < r->cellkeys.n; i++) {
		struct rcell *c = &r->cells[i];
		int64_t bytes, count;
		heap__live(r->heap, (uint32_t)i, &bytes, &count);
		if (c->pid != pid || bytes <= 0 || count <= 0) /* <= 0: only forged events */
			continue;
		counts_add(&k, c, KM_LIVE_BYTES, bytes);
		counts_add(&k, c, KM_LIVE_COUNT, count);
	}
	counts_release(&k);
	r->scratch.len = 0;
	rec_end__encode(&r->scratch, &(struct rec_end){realtime_ns(), 0, 0});
	stream_writer__record(w, REC_END, r->scratch.data, r->scratch.len);
	return 0;
}
