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

struct recorder *recorder__new(struct stream_writer *w, json_t *meta);
/* Frees everything; does not close the writer. */
void recorder__free(struct recorder *r);

/* Process lifecycle, as the collectors learn it. */
struct rproc *recorder__proc(struct recorder *r, uint32_t pid);
void recorder__fork(struct recorder *r, uint32_t pid, uint32_t ppid);
void recorder__exec(struct recorder *r, uint32_t pid, const char *comm);
void recorder__exit(struct recorder *r, uint32_t pid, int status);
void recorder__thread_name(struct recorder *r, uint32_t pid, uint32_t tid, const char *name);
/* A new executable mapping (PERF_RECORD_MMAP2 or /proc/PID/maps). */
void recorder__mmap(struct recorder *r, uint32_t pid, uint64_t start, uint64_t len, uint64_t pgoff,
		    const char *path);
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
/* Add to a cell's value. */
void recorder__count(struct recorder *r, uint32_t pid, uint32_t tid, uint32_t stack, int metric, int64_t delta);

/* Heap events, in the order the process made them: an allocation in a cell
 * (pid, tid, stack: look it up once with recorder__cell), a free in a process. */
uint32_t recorder__cell(struct recorder *r, uint32_t pid, uint32_t tid, uint32_t stack);
void recorder__alloc_cell(struct recorder *r, uint32_t cell, uint64_t addr, uint64_t size);
void recorder__free_in(struct recorder *r, struct rproc *p, uint64_t addr);
/* A process image ended (exec or exit): its live blocks become leaks. */
void recorder__heap_end(struct recorder *r, uint32_t pid);

void recorder__lost(struct recorder *r, uint64_t n);
uint64_t recorder__samples(const struct recorder *r);

/* Write what is new. 0 or -errno from the file. */
int recorder__flush(struct recorder *r);
/* Final flush and the END record. */
int recorder__finish(struct recorder *r);

/* Write one process's live heap as a snapshot file; 0 or -errno. */
int recorder__write_snapshot(struct recorder *r, uint32_t pid, const char *path);

#endif
