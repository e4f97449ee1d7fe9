/* The recorder's tables (see recorder.h). Single-threaded: the record loop
 * owns it. Heap accounting is collect/heap.c's; this file keeps the tables
 * that name things (processes, maps, locations, stacks, cells) and writes
 * them. Files the profiled program can name or write (its maps' paths, its
 * perf map) are opened as untrusted: never blocking, never through a
 * symlink, checked against what the kernel says is mapped. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libunwind.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "collect/heap.h"
#include "collect/preload.h"
#include "collect/python.h"
#include "collect/recorder.h"
#include "collect/timeline.h"
#include "collect/unwind.h"
#include "stream/format.h"
#include "stream/records.h"
#include "symbols/image.h"
#include "symbols/kallsyms.h"
#include "util/util.h"

struct rmap {
	uint64_t start, end, pgoff, bias;
	uint32_t module;
	struct image *img; /* NULL for anonymous or unreadable */
};

struct rproc {
	uint32_t pid, ppid;
	char comm[64];
	char *exe;
	struct rmap *maps;
	size_t nmaps, cmaps;
	size_t last_hit;
	unw_addr_space_t as;
	uint64_t maps_read_ns;
	bool dirty, exited;
	bool tl_done; /* exited, and its last timeline entry is written */
	uint64_t env_recheck; /* exec'd with its environment not yet readable: since (CLOCK_MONOTONIC ns) */
	int status;
	uint64_t start_ns, end_ns;
	uint32_t idx; /* in recorder.procs: the heap's process id */
	uint32_t anon_module, unmapped_module; /* + 1; 0: not made yet (pid_module) */
	/* JIT names from /tmp/perf-PID.map, read once, sorted by start */
	struct jit_sym *jit;
	size_t njit;
	bool jit_read;
	uint64_t heap_loss[HL__COUNT];
	bool loss_dirty;
	/* a CPython runtime mapped in it (collect/python.h) */
	struct pyproc *py;
	struct image *py_img; /* where it was found, and its bias: a forked child finds it there too */
	uint64_t py_bias;
	uint64_t py_merged, py_unmerged, py_unread, py_missing, py_unreadable, py_cyclic;
	struct intern pyframes;  /* heap stacks' Python frames {code, first << 32 | lasti} -> index in pyframe_loc */
	uint32_t *pyframe_loc;
	size_t cpyframe_loc;
	bool py_final;           /* its heap is counted up to CPython's finalization */
	uint64_t py_after_final; /* heap events after it, not counted */
};

struct jit_sym {
	uint64_t start, end;
	char *name;
	uint32_t order;
};

struct rmodule {
	char *path;
	uint8_t kind;
	uint32_t pid;
	struct image *img;
	bool written;
};

struct rcell {
	uint32_t pid, tid, stack;
	int64_t v[KM__COUNT];
	int64_t written[KM__COUNT];
	uint32_t thr; /* index in recorder.thr */
	struct rproc *proc;
};

struct rthread {
	uint32_t pid, tid;
	char name[64];
	bool dirty;
};

struct recorder {
	struct stream_writer *w;
	json_t *meta;
	struct rproc **procs;
	size_t nprocs, cprocs;
	struct u64map procidx; /* pid -> index */
	struct rmodule *mods;
	size_t nmods, cmods;
	struct intern modkeys; /* path (or "[anon]pid") -> module id */
	struct intern imgkeys; /* path -> image index */
	struct image **imgs;
	size_t cimgs;
	struct image *vdso;
	bool vdso_tried;
	struct intern locs;    /* {u32 module, u32 flags, u64 addr} -> loc id */
	struct buf *locsyms;   /* encoded SYM payload per loc */
	size_t clocsyms;
	size_t locs_written;
	uint32_t *unsym;       /* locations written but not yet symbolized */
	size_t nunsym, cunsym;
	size_t unsym_quick;    /* the first unsym_quick of them have a quick name written */
	struct intern stacks;  /* {u16 flags, u16 depth, u32 loc[]} -> stack id */
	size_t stacks_written;
	struct intern cellkeys;
	struct rcell *cells;
	size_t ccells;
	struct u64map threads; /* pid<<32|tid -> index+1 */
	struct rthread *thr;
	size_t nthr, cthr;
	uint64_t samples, lost, lost_written;
	bool meta_written;
	struct heap *heap;
	struct timeline *tl;
	size_t nexited;          /* processes of procs that have exited */
	size_t env_pending;      /* processes whose env_recheck is set */
	struct rec_slow *slow;   /* loop stretches waiting for the next flush (their stacks first) */
	size_t nslow, cslow;
	uint64_t slows, slows_dropped; /* kept in all, and past RECORDER_MAX_SLOW */
	bool heap_on; /* the shim is preloaded: check each exec'd image can carry it */
	uint32_t kernel_module; /* [kernel.kallsyms], once a kernel address is seen */
	bool has_kernel;
	struct ksyms *ksyms;
	bool ksyms_tried;
	struct buf scratch;
	/* Python frames: one module for all, a location per (function, file, line) */
	uint32_t py_module;
	char *py_reader; /* how CPU samples' Python frames are read (META python.PID.reader) */
	void (*on_python)(void *ctx, uint32_t pid, struct pyproc *py);
	void *on_python_ctx;
	bool has_py, meta_dirty;
	struct intern pynames; /* "qualname\0file\0" + u32 line + u32 def line -> location addr */
};

static struct rproc *proc_find(struct recorder *r, uint32_t pid)
{
	struct u64map_ent *e = u64map__find(&r->procidx, (uint64_t)pid);
	return e ? r->procs[e->v1] : NULL;
}

bool recorder__known(struct recorder *r, uint32_t pid)
{
	return proc_find(r, pid) != NULL;
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
	struct rproc *p = proc_find(r, pid);
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

/* img, mapped in p at bias, may be a CPython interpreter or libpython. */
static void python_detect(struct recorder *r, struct rproc *p, struct image *img, uint64_t bias)
{
	char why[256];
	p->py = pyproc__detect(img, bias, (pid_t)p->pid, why, sizeof(why));
	if (p->py) {
		p->py_img = img;
		p->py_bias = bias;
		if (r->on_python)
			r->on_python(r->on_python_ctx, p->pid, p->py);
	} else if (why[0]) {
		json_t *n = json_object_get(r->meta, "python_notices");
		if (!json_is_array(n)) {
			n = json_array();
			json_object_set_new(r->meta, "python_notices", n);
		}
		if (json_array_size(n) < 16) {
			char line[320];
			snprintf(line, sizeof(line), "pid %u: %s", p->pid, why);
			json_array_append_new(n, json_string(line));
		}
		p->py_img = img; /* checked: not again */
	}
	r->meta_dirty = true;
}

static bool python_named(const char *path)
{
	const char *b = path_base(path);
	return !strncmp(b, "python", 6) || !strncmp(b, "libpython", 9);
}

static void python_frames_forget(struct rproc *p);

static void python_forget(struct rproc *p)
{
	python_frames_forget(p);
	pyproc__free(p->py);
	p->py = NULL;
	p->py_img = NULL;
}

static void proc_flush_unwind(struct rproc *p)
{
	if (p->as)
		unw_flush_cache(p->as, 0, 0);
}

void recorder__fork(struct recorder *r, uint32_t pid, uint32_t ppid)
{
	struct rproc *parent = proc_find(r, ppid);
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
			python_detect(r, p, parent->py_img, parent->py_bias);
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
	proc_flush_unwind(p);
	python_forget(p);
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
static void timeline_point(struct recorder *r, uint64_t now)
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

void recorder__tick(struct recorder *r)
{
	uint64_t now = now_ns();
	for (size_t i = 0; r->env_pending && i < r->nprocs; i++)
		if (r->procs[i]->env_recheck)
			heap_check(r, r->procs[i], now);
	if (timeline__due(r->tl, now, r->nprocs - r->nexited))
		timeline_point(r, now);
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

static uint32_t module_get(struct recorder *r, const char *key, const char *path, uint8_t kind, uint32_t pid,
			   struct image *img)
{
	bool added;
	uint32_t id = intern__put(&r->modkeys, key, (uint32_t)strlen(key), &added);
	if (added) {
		ARR_GROW(r->mods, r->cmods, id + 1);
		r->mods[id].path = xstrdup(path);
		r->mods[id].kind = kind;
		r->mods[id].pid = pid;
		r->mods[id].img = img;
		r->nmods = id + 1;
	}
	return id;
}

static struct image *image_get(struct recorder *r, const char *path, uint32_t pid, uint64_t start, uint64_t end,
			       uint64_t ino)
{
	bool added;
	uint32_t id = intern__put(&r->imgkeys, path, (uint32_t)strlen(path), &added);
	ARR_GROW(r->imgs, r->cimgs, id + 1);
	if (added) {
		int fd = proc_map__open((int)pid, path, start, end, ino);
		r->imgs[id] = fd >= 0 ? image__open_fd(fd, path) : NULL;
	}
	return r->imgs[id];
}

static int map_cmp(const void *a, const void *b)
{
	const struct rmap *x = a, *y = b;
	return x->start < y->start ? -1 : x->start > y->start;
}

void recorder__mmap(struct recorder *r, uint32_t pid, uint64_t start, uint64_t len, uint64_t pgoff,
		    const char *path, uint64_t ino)
{
	struct rproc *p = recorder__proc(r, pid);
	uint64_t end = start + len;
	struct rmap m = {.start = start, .end = end, .pgoff = pgoff, .module = UINT32_MAX};
	if (!strcmp(path, "[vdso]")) {
		if (!r->vdso_tried) {
			r->vdso = image__vdso();
			r->vdso_tried = true;
		}
		m.img = r->vdso;
		if (m.img && image__bias(m.img, start, 0, &m.bias) == 0)
			m.module = module_get(r, "[vdso]", "[vdso]", MOD_VDSO, 0, m.img);
		else
			m.img = NULL;
	} else if (path[0] == '/') {
		char clean[4096];
		snprintf(clean, sizeof(clean), "%s", path);
		size_t n = strlen(clean);
		if (n > 10 && !strcmp(clean + n - 10, " (deleted)"))
			clean[n - 10] = 0;
		m.img = image_get(r, clean, pid, start, end, ino);
		if (m.img && image__bias(m.img, start, pgoff, &m.bias) == 0)
			m.module = module_get(r, clean, clean, MOD_FILE, 0, m.img);
		else
			m.img = NULL;
		if (m.img && !p->py_img && python_named(clean))
			python_detect(r, p, m.img, m.bias);
	} else if (path[0] == '[' && strcmp(path, "[anon]") && strncmp(path, "[anon:", 6)) {
		return; /* [stack], [heap], [vsyscall]: no code kiln can name */
	}
	/* Replace whatever overlapped: the newer mapping wins; what an old
	 * mapping had below and above the new one stays. At most one old
	 * mapping can stick out above (they do not overlap each other). */
	size_t k = 0;
	bool changed = false, has_hi = false;
	struct rmap hi;
	for (size_t i = 0; i < p->nmaps; i++) {
		struct rmap *o = &p->maps[i];
		if (o->end <= start || o->start >= end) {
			p->maps[k++] = *o;
			continue;
		}
		changed = true;
		if (o->end > end) { /* the part above */
			hi = *o;
			hi.pgoff += end - o->start;
			hi.start = end;
			has_hi = true;
		}
		if (o->start < start) { /* and the part below */
			struct rmap lo = *o;
			lo.end = start;
			p->maps[k++] = lo;
		}
	}
	p->nmaps = k;
	ARR_GROW(p->maps, p->cmaps, p->nmaps + 2);
	p->maps[p->nmaps++] = m;
	if (has_hi)
		p->maps[p->nmaps++] = hi;
	sort_array(p->maps, p->nmaps, sizeof(*p->maps), map_cmp);
	p->last_hit = 0;
	if (changed)
		proc_flush_unwind(p);
}

int recorder__read_maps(struct recorder *r, uint32_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%u/maps", pid);
	char *text = read_small_file(path, NULL);
	if (!text)
		return -errno;
	struct rproc *p = recorder__proc(r, pid);
	p->maps_read_ns = now_ns();
	char *save = NULL;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		struct proc_map m;
		if (!proc_map__parse(line, &m) || m.perms[2] != 'x')
			continue;
		recorder__mmap(r, pid, m.lo, m.hi - m.lo, m.off, *m.path ? m.path : "[anon]", m.ino);
	}
	free(text);
	return 0;
}

static struct rmap *map_at(struct rproc *p, uint64_t addr)
{
	if (p->last_hit < p->nmaps) {
		struct rmap *m = &p->maps[p->last_hit];
		if (addr >= m->start && addr < m->end)
			return m;
	}
	size_t lo = upper_bound_u64(p->maps, p->nmaps, sizeof(*p->maps), addr);
	if (lo && addr < p->maps[lo - 1].end) {
		p->last_hit = lo - 1;
		return &p->maps[lo - 1];
	}
	return NULL;
}

const struct image *recorder__image_at(struct recorder *r, uint32_t pid, uint64_t addr, uint64_t *bias,
				       uint64_t *map_start, uint64_t *map_end)
{
	struct rproc *p = proc_find(r, pid);
	if (!p)
		return NULL;
	struct rmap *m = map_at(p, addr);
	if (m && m->img) {
		*bias = m->bias;
		if (map_start)
			*map_start = m->start;
		if (map_end)
			*map_end = m->end;
		return m->img;
	}
	/* Not in an executable mapping: perhaps in a read-only segment of an
	 * image (.eh_frame), which only its executable mapping tells us of. */
	for (size_t i = 0; i < p->nmaps; i++) {
		m = &p->maps[i];
		if (m->img && addr >= m->img->lo + m->bias && addr < m->img->hi + m->bias) {
			*bias = m->bias;
			if (map_start)
				*map_start = m->start;
			if (map_end)
				*map_end = m->end;
			return m->img;
		}
	}
	return NULL;
}

void *recorder__unw_as(struct recorder *r, uint32_t pid)
{
	struct rproc *p = recorder__proc(r, pid);
	if (!p->as)
		p->as = unwind__new_as();
	return p->as;
}

/* p's own module named what ("[anon]": anonymous memory, JIT code;
 * "[unmapped]": addresses in no mapping), made at its first use. */
static uint32_t pid_module(struct recorder *r, struct rproc *p, uint32_t *id, const char *what)
{
	if (!*id) {
		char k[48];
		snprintf(k, sizeof(k), "%s%u", what, p->pid);
		*id = module_get(r, k, what, MOD_ANON, p->pid, NULL) + 1;
	}
	return *id - 1;
}

static uint32_t loc_get(struct recorder *r, struct rproc *p, uint64_t ip, bool retaddr)
{
	struct {
		uint32_t module, flags;
		uint64_t addr;
	} kkey;
	if (ip >= KILN_KERNEL_START) { /* a kernel frame: one module for every process */
		if (!r->has_kernel) {
			r->kernel_module = module_get(r, "[kernel.kallsyms]", "[kernel.kallsyms]", MOD_KERNEL, 0, NULL);
			r->has_kernel = true;
		}
		kkey.module = r->kernel_module;
		kkey.flags = retaddr ? LOC_RETADDR : 0;
		kkey.addr = ip;
		return intern__put(&r->locs, &kkey, sizeof(kkey), NULL);
	}
	struct rmap *m = map_at(p, ip);
	if (!m && now_ns() - p->maps_read_ns > 20000000ull) {
		recorder__read_maps(r, p->pid);
		m = map_at(p, ip);
	}
	struct {
		uint32_t module, flags;
		uint64_t addr;
	} key;
	if (m && m->module != UINT32_MAX) {
		key.module = m->module;
		key.addr = ip - m->bias;
	} else {
		/* in no mapping, even after reading the maps again (e.g. a sample
		 * inside execve, whose user address is the old image's): said as
		 * such, never as anonymous (JIT) memory */
		key.module = m ? pid_module(r, p, &p->anon_module, "[anon]") : pid_module(r, p, &p->unmapped_module, "[unmapped]");
		key.addr = ip;
	}
	key.flags = retaddr ? LOC_RETADDR : 0;
	bool added;
	uint32_t id = intern__put(&r->locs, &key, sizeof(key), &added);
	if (added && m && m->img)
		image__prefetch(m->img);
	return id;
}

uint32_t recorder__stack(struct recorder *r, uint32_t pid, const uint64_t *ips, int n, bool exact_leaf,
			 bool truncated)
{
	return recorder__stack_at(r, pid, ips, n, exact_leaf ? 0 : -1, -1, truncated);
}

uint32_t recorder__stack_at(struct recorder *r, uint32_t pid, const uint64_t *ips, int n, int exact_a, int exact_b,
			    bool truncated)
{
	struct rproc *p = recorder__proc(r, pid);
	uint32_t key[2 + KILN_MAX_DEPTH];
	if (n > KILN_MAX_DEPTH) {
		n = KILN_MAX_DEPTH;
		truncated = true;
	}
	key[0] = truncated ? STACK_TRUNCATED : 0;
	key[1] = (uint32_t)n;
	for (int i = 0; i < n; i++)
		key[2 + i] = loc_get(r, p, ips[i], i != exact_a && i != exact_b);
	return intern__put(&r->stacks, key, (uint32_t)(2 + n) * 4, NULL);
}

void recorder__meta_changed(struct recorder *r)
{
	r->meta_dirty = true;
}

uint64_t recorder__unknown_frees(struct recorder *r, uint32_t pid)
{
	struct rproc *p = proc_find(r, pid);
	return p ? heap__unknown_frees(r->heap, p->idx) : 0;
}

void recorder__python_code(struct recorder *r, uint32_t pid, uint64_t code, int32_t first, const unsigned char *qual,
			   size_t qlen, unsigned qkind, const unsigned char *file, size_t flen, unsigned fkind,
			   const unsigned char *table, size_t tlen)
{
	struct rproc *p = proc_find(r, pid);
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
	struct rproc *p = proc_find(r, pid);
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
		r->py_module = module_get(r, "[python]", "[python]", MOD_PYTHON, 0, NULL);
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
		} else {
			struct rmap *m = ips[i] < KILN_KERNEL_START ? map_at(p, ips[i]) : NULL;
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
		key[2 + i] = order[i] >= 0 ? loc_get(r, p, ips[order[i]], order[i] != exact_a && order[i] != exact_b)
					   : loc_get_py(r, p, &py[-order[i] - 1]);
	return intern__put(&r->stacks, key, (uint32_t)(2 + k) * 4, NULL);
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
	cell_get(r, pid, tid, stack)->v[metric] += delta;
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

static void timeline_point(struct recorder *r, uint64_t now);

void recorder__heap_end(struct recorder *r, uint32_t pid)
{
	struct rproc *p = proc_find(r, pid);
	if (!p)
		return;
	/* a point just before the image ends: its last heap is never merged
	 * into the next image's window */
	timeline_point(r, now_ns());
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
	for (size_t i = 0; i < r->nslow; i++)
		free(r->slow[i].task);
	free(r->slow);
	ksyms__free(r->ksyms);
	json_decref(r->meta);
	free(r);
}

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
	struct rproc *p = proc_find(r, pid);
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

static int flush(struct recorder *r, bool wait);

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
	uint64_t stopped = realtime_ns(); /* the recording's end, not the symbolizing after it */
	timeline_point(r, now_ns()); /* the last point: nothing since the one before is lost */
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
	struct rproc *p = proc_find(r, pid);
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
