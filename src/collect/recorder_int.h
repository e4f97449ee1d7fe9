/* What the recorder's files share (see recorder.h for what it does): its
 * tables and the lookups one file makes in another's.
 *   recorder.c         processes, threads, cells; fork, exec, exit; the heap's
 *                      and the timeline's glue; new and free
 *   recorder_maps.c    memory maps, modules, images; native locations and
 *                      stacks
 *   recorder_python.c  CPython found in a process; Python locations and the
 *                      merged native + Python stacks; loop stretches
 *   recorder_write.c   symbolization and writing: records, JIT maps, flushes,
 *                      finish, snapshots
 * Single-threaded: the record loop owns the recorder. */
#ifndef KILN_COLLECT_RECORDER_INT_H
#define KILN_COLLECT_RECORDER_INT_H

#include <libunwind.h>
#include <stdbool.h>
#include <stdint.h>
#include "collect/heap.h"
#include "collect/python.h"
#include "collect/recorder.h"
#include "collect/timeline.h"
#include "collect/windows.h"
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
	uint64_t stop_mono, stop_real; /* recorder__stopped, 0 before */
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
	struct windows *win;
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

/* recorder.c */
struct rproc *recorder_proc_find(struct recorder *r, uint32_t pid); /* NULL: not known */
void recorder_flush_unwind(struct rproc *p); /* its maps changed: libunwind's caches go */
void recorder_timeline_point(struct recorder *r, uint64_t now);
void recorder_window_cut(struct recorder *r, uint64_t now); /* close the time window (collect/windows.h) */
uint64_t recorder_now(const struct recorder *r); /* now_ns(), at most the time recording stopped */
/* recorder_maps.c */
uint32_t recorder_module_get(struct recorder *r, const char *key, const char *path, uint8_t kind, uint32_t pid,
			     struct image *img);
struct rmap *recorder_map_at(struct rproc *p, uint64_t addr);
uint32_t recorder_loc_get(struct recorder *r, struct rproc *p, uint64_t ip, bool retaddr);
/* recorder_python.c */
void recorder_python_detect(struct recorder *r, struct rproc *p, struct image *img, uint64_t bias);
void recorder_python_forget(struct rproc *p);

#endif
