/* The recorder's state: what the collectors (perf_event or ptrace sampler,
 * the heap shim's rings) have told it, kept interned and aggregated so the
 * profile file grows with distinct stacks and live blocks, not with events.
 *
 *   sampler ──ips──►┐
 *                   ├─► maps → (module, vaddr) locations → stacks → cells
 *   heap rings ─────┘        (pid, tid, stack) × metric values, live blocks, peak
 *
 * recorder__flush() symbolizes what is new (while the binaries exist) and
 * writes new modules, locations, symbols, stacks and changed cell values as
 * stream records; the caller flushes at least once a second. */
#ifndef KILN_COLLECT_RECORDER_H
#define KILN_COLLECT_RECORDER_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>
#include "kiln/kiln.h"
#include "stream/stream.h"

struct recorder;
struct rproc;
struct image;
struct pyproc;

struct recorder *recorder__new(struct stream_writer *w, json_t *meta);
/* Frees everything; does not close the writer. */
void recorder__free(struct recorder *r);

/* Process lifecycle, as the collectors learn it. */
struct rproc *recorder__proc(struct recorder *r, uint32_t pid);
/* A process the recording has seen (made no entry for it). */
bool recorder__known(struct recorder *r, uint32_t pid);
void recorder__fork(struct recorder *r, uint32_t pid, uint32_t ppid);
void recorder__exec(struct recorder *r, uint32_t pid, const char *comm);
void recorder__exit(struct recorder *r, uint32_t pid, int status);
/* Heap tracking is on: each exec is checked for what would keep the shim
 * out (collect/preload.h), and such a process is reported as untracked.
 * sample: the --heap-sample mean the shims sample by (0: every allocation). */
void recorder__set_heap(struct recorder *r, bool on, uint64_t sample);
/* The META object that will be written (borrowed); after changing it, say
 * so: the next flush writes it again (a later META replaces the earlier). */
json_t *recorder__meta(struct recorder *r);
void recorder__meta_changed(struct recorder *r);
/* n more waits with a timeout that a stop of kiln's ended with EINTR (the
 * ptrace sampler's, a heap attach's or detach's): META waits_ended.timed,
 * added up over every stopper. */
void recorder__waits_ended(struct recorder *r, uint64_t n);
/* Frees in pid of blocks never seen allocated (before an attach). */
uint64_t recorder__unknown_frees(struct recorder *r, uint32_t pid);
/* Over every process: frees of blocks never seen allocated, allocations at an
 * address still live (heap__over_live). */
void recorder__heap_unmatched(struct recorder *r, uint64_t *frees, uint64_t *over_live);
/* Whether CPU samples carry kernel frames (META "kernel_stacks"). */
void recorder__set_kernel_stacks(struct recorder *r, bool on);
void recorder__thread_name(struct recorder *r, uint32_t pid, uint32_t tid, const char *name);
/* A new executable mapping (PERF_RECORD_MMAP2 or /proc/PID/maps); ino, when
 * not 0, is the mapped file's inode: a path that now names another file is
 * not read. */
void recorder__mmap(struct recorder *r, uint32_t pid, uint64_t start, uint64_t len, uint64_t pgoff,
		    const char *path, uint64_t ino);
/* Read /proc/PID/maps (at attach, or when an address is in no known map). */
int recorder__read_maps(struct recorder *r, uint32_t pid);

/* Unwinding support for samplers: the image and bias of an address. */
const struct image *recorder__image_at(struct recorder *r, uint32_t pid, uint64_t addr, uint64_t *bias,
				       uint64_t *map_start, uint64_t *map_end);
/* libunwind address space for pid (cached per process). */
void *recorder__unw_as(struct recorder *r, uint32_t pid);

/* Intern a stack of raw addresses (leaf first). exact_leaf: ips[0] is an
 * instruction pointer (a sample) rather than a return address. */
uint32_t recorder__stack(struct recorder *r, uint32_t pid, const uint64_t *ips, int n, bool exact_leaf,
			 bool truncated);
/* The same where two addresses are instruction pointers: the kernel's leaf
 * (exact_a) and the user address the kernel was entered at (exact_b). -1:
 * none. */
uint32_t recorder__stack_at(struct recorder *r, uint32_t pid, const uint64_t *ips, int n, int exact_a, int exact_b,
			    bool truncated);
/* The same, merging the Python frames py (innermost first, npy of them, or
 * -1: no thread state, -2: the frames could not be read, -3: the sampler
 * caught none for this sample) into the interpreter's native frames
 * (collect/python.h); a stack they do not agree with is kept native and
 * counted as not merged (META "python"). */
struct pyframe;
uint32_t recorder__stack_py(struct recorder *r, uint32_t pid, const uint64_t *ips, int n, int exact_a, int exact_b,
			    bool truncated, const struct pyframe *py, int npy);
/* A Python code object's names, as the shim sent them (collect/python.h
 * pyproc__define); nothing when pid runs no CPython kiln reads. */
void recorder__python_code(struct recorder *r, uint32_t pid, uint64_t code, int32_t first, const unsigned char *qual,
			   size_t qlen, unsigned qkind, const unsigned char *file, size_t flen, unsigned fkind,
			   const unsigned char *table, size_t tlen);
/* fn is called as soon as a process is found to run a CPython kiln reads
 * (a sampler that reads frames at each sample registers it then). */
void recorder__on_python(struct recorder *r, void (*fn)(void *ctx, uint32_t pid, struct pyproc *py), void *ctx);
/* How CPU samples' Python frames are read ("eBPF, in the sampled thread at
 * each sample", ...), said per interpreter in META. */
void recorder__set_python_reader(struct recorder *r, const char *how);
/* The CPython runtime of pid, or NULL. */
struct pyproc *recorder__python(struct recorder *r, uint32_t pid);
/* A stack of Python frames alone (labels included), innermost first: a
 * suspended asyncio task's await chain under its "Task NAME". 0 when pid
 * runs no CPython kiln reads. */
uint32_t recorder__stack_pyonly(struct recorder *r, uint32_t pid, const struct pyframe *py, int npy);
/* A stretch in which one callback or task step held pid's event loop in
 * thread tid (collect/pyasync.h): written as a SLOW record. At most
 * RECORDER_MAX_SLOW a recording; more are counted, not kept. */
#define RECORDER_MAX_SLOW 100000
void recorder__slow(struct recorder *r, uint32_t pid, uint32_t tid, uint64_t start_ns, uint64_t dur_ns,
		    uint32_t stack, const char *task);
/* Add to a cell's value without counting a sample (what a sample charges
 * besides its own stack: a suspended task's wait). */
void recorder__charge(struct recorder *r, uint32_t pid, uint32_t tid, uint32_t stack, int metric, int64_t delta);
/* Add to a cell's value. */
void recorder__count(struct recorder *r, uint32_t pid, uint32_t tid, uint32_t stack, int metric, int64_t delta);

/* Heap events, in the order the process made them: an allocation in a cell
 * (pid, tid, stack: look it up once with recorder__cell), a free in a process. */
uint32_t recorder__cell(struct recorder *r, uint32_t pid, uint32_t tid, uint32_t stack);
void recorder__alloc_cell(struct recorder *r, uint32_t cell, uint64_t addr, uint64_t size);
void recorder__free_in(struct recorder *r, struct rproc *p, uint64_t addr);
/* CPython in pid began finalizing (the shim's RING_PYFIN): what is live now
 * is what the program left (leaks); later events are not counted. */
void recorder__python_final(struct recorder *r, uint32_t pid);
/* A process image ended (exec or exit): its live blocks become leaks. */
void recorder__heap_end(struct recorder *r, uint32_t pid);
/* Heap events lost in pid (n events, or for the process causes of enum
 * kiln_heap_loss: the process was not tracked). Written as REC_HEAP_LOSS. */
void recorder__heap_loss(struct recorder *r, uint32_t pid, int cause, uint64_t n);
/* The processes whose heap could not be tracked, one per call: start with
 * *it = 0; false at the end. */
bool recorder__untracked(const struct recorder *r, size_t *it, uint32_t *pid, const char **comm, int *cause);
/* Heap events lost so far, all causes that count events. */
uint64_t recorder__heap_lost(const struct recorder *r);

void recorder__lost(struct recorder *r, uint64_t n);
uint64_t recorder__samples(const struct recorder *r);
uint64_t recorder__lost_samples(const struct recorder *r);

/* Memory over time (collect/timeline.h): a point when one is due. The
 * caller ticks at least every 2 ms while recording; the last point is taken
 * by recorder__finish. */
void recorder__tick(struct recorder *r);

/* Recording stopped (sampling off, heap detached or the program gone): the
 * profile's end and the time of the timeline's last points, whatever the
 * draining of what was recorded before it takes after. */
void recorder__stopped(struct recorder *r);

/* Write what is new. 0 or -errno from the file. */
int recorder__flush(struct recorder *r);
/* Final flush and the END record. */
int recorder__finish(struct recorder *r);

/* One process's live heap as a snapshot (a profile of its own) into w, which
 * the caller made (stream_writer__new) and puts where it belongs. 0, -ESRCH
 * (pid not recorded) or -errno from the recording's own file. */
int recorder__snapshot(struct recorder *r, uint32_t pid, struct stream_writer *w);

#endif
