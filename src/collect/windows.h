/* Time windows: what each cell (a stack in a thread of a process) gained in
 * each stretch of the recording, written as WINDOW records
 * (stream/format.h), so a reader can show any stretch of time: the samples
 * taken in it, what was allocated in it, what was live at its end.
 *
 * A window closes every 20 ms for the first 1.28 s, then at 1/64 of the
 * time recorded so far (about 44 windows per doubling of the length), the
 * interval stretched by one for each 512 Ki entries already written, so a
 * long recording of many stacks stays bounded. A window holds one entry
 * per cell and metric that changed in it (an empty one is written too: its
 * time is an edge a stretch can be cut at). Windows wait in memory for the
 * next flush, after the stacks they name. */
#ifndef KILN_COLLECT_WINDOWS_H
#define KILN_COLLECT_WINDOWS_H

#include <stdbool.h>
#include <stdint.h>
#include "collect/heap.h"
#include "stream/records.h"
#include "stream/stream.h"

struct windows;

/* start: the recording's start (CLOCK_MONOTONIC ns). */
struct windows *windows__new(uint64_t start);
void windows__free(struct windows *w);
/* n samples of metric (KM_CPU or KM_WALL) in cell. */
void windows__sample(struct windows *w, uint32_t cell, int metric, int64_t n);
/* Whether the window should close at now (CLOCK_MONOTONIC ns). */
bool windows__due(const struct windows *w, uint64_t now);
/* Close the window at now: its samples and heap's deltas (heap may be NULL)
 * become entries, stamped with the real time; key fills an entry's pid, tid
 * and stack from a cell. */
typedef void (*windows_key_fn)(void *arg, uint32_t cell, struct rec_count *e);
void windows__cut(struct windows *w, uint64_t now, struct heap *heap, windows_key_fn key, void *arg);
/* Write the windows closed since the last call. */
void windows__write(struct windows *w, struct stream_writer *sw);

#endif
