/* Heap accounting: what the allocation and free events of each process image
 * add up to, per cell (a stack in a thread of a process), exactly.
 *
 *   alloc/free ──► live[addr] = {size, cell}
 *                  cell.live ±= size            (leak_* when the image ends)
 *                  proc.cur ±= size, all.cur ±= size; new max of all.cur
 *                  ⇒ all.peak_seq = seq
 *   before changing cell.live: if cell.mod_seq <= all.peak_seq then
 *                  cell.peak = cell.live        (its value at the last peak)
 *   peak_bytes(cell) = cell.mod_seq <= all.peak_seq ? cell.live : cell.peak
 *
 * so the per-stack heap at the largest moment costs O(1) per event. The
 * peak is one moment of the whole recording: every process image live then,
 * together (an image that ended holds nothing after: the kernel took its
 * memory), never the sum of peaks that did not coexist. The live
 * map takes any address as a key (0 and ~0 included): nothing a program
 * hands us can collide with a marker. Ids (cells, procs, threads) are the
 * caller's dense indices. */
#ifndef KILN_COLLECT_HEAP_H
#define KILN_COLLECT_HEAP_H

#include <stdbool.h>
#include <stdint.h>
#include "kiln/kiln.h"

struct heap;

struct heap *heap__new(void);
void heap__free(struct heap *h);

/* Declare cell (once) as belonging to process image proc and thread. */
void heap__cell(struct heap *h, uint32_t cell, uint32_t proc, uint32_t thread);
bool heap__has_cell(const struct heap *h, uint32_t cell);
/* Sampled allocations (--heap-sample, mean bytes; before any event): each
 * stands for 1/P(taken) allocations (sample.h's P), rounded at random
 * without bias; counts, bytes, leaks, live and peak become estimates, and
 * temp_count is not computed. */
void heap__sample(struct heap *h, uint64_t mean);
uint64_t heap__sampled(const struct heap *h);
/* An allocation of size bytes at addr in a declared cell. A block already
 * live at addr (its free was never seen) is forgotten first. */
void heap__alloc(struct heap *h, uint32_t cell, uint64_t addr, uint64_t size);
/* A free in process image proc; false when no live block is at addr (it was
 * allocated before tracking began: counted in heap__unknown_frees). */
bool heap__free_block(struct heap *h, uint32_t proc, uint64_t addr);
/* The image ended (exit or exec): what is live becomes leaked, and a new
 * image starting in proc starts from an empty heap. */
void heap__end(struct heap *h, uint32_t proc);

/* alloc_bytes, alloc_count, leak_bytes, leak_count, peak_bytes, temp_count
 * of a cell into v (other metrics untouched); nothing for undeclared cells. */
void heap__values(const struct heap *h, uint32_t cell, int64_t v[KM__COUNT]);
/* What is live now in a cell. */
void heap__live(const struct heap *h, uint32_t cell, int64_t *bytes, int64_t *count);
uint64_t heap__unknown_frees(const struct heap *h, uint32_t proc);
/* Allocations at an address a live block held (its free was not seen: lost,
 * or taken out of order): none in a recording that lost nothing. */
uint64_t heap__over_live(const struct heap *h, uint32_t proc);
/* Bytes live in proc now, and at its own largest moment. */
int64_t heap__current(const struct heap *h, uint32_t proc);
int64_t heap__peak(const struct heap *h, uint32_t proc);
/* Bytes live in every image together now, and at the recording's peak (the
 * moment peak_bytes describes: the sum of every cell's peak_bytes). */
int64_t heap__total_current(const struct heap *h);
int64_t heap__total_peak(const struct heap *h);
/* The most bytes live in proc (or HEAP_ALL: every image together) since the
 * last call for it; the window restarts at what is live now. The largest
 * window of HEAP_ALL is heap__total_peak, exactly. */
#define HEAP_ALL UINT32_MAX
int64_t heap__window(struct heap *h, uint32_t proc);

/* What each cell changed since the last call (one time window of the
 * profile: stream/format.h REC_WINDOW): bytes and allocations allocated,
 * and live bytes and blocks as signed deltas: allocated less freed. An
 * image's end frees nothing here: what it still held stays counted as its
 * leaks. fn gets each cell that changed; every delta then restarts at 0.
 * Summed over the calls, HW_ALLOC_* are alloc_bytes and alloc_count, and
 * HW_LIVE_* leak_bytes and leak_count once every image has ended. */
enum { HW_ALLOC_BYTES, HW_ALLOC_COUNT, HW_LIVE_BYTES, HW_LIVE_COUNT, HW__N };
void heap__deltas(struct heap *h, void (*fn)(void *arg, uint32_t cell, const int64_t d[HW__N]), void *arg);

#endif
