/* Memory over time: each process's heap and resident set at regular points
 * of the recording, written as TIMELINE records (stream/format.h).
 *
 * A point's heap is the most bytes live since the point before (the heap's
 * windows, collect/heap.h), so the largest point is the peak to the byte,
 * however short the peak was. RSS is read from /proc/PID/statm through a
 * descriptor opened once per process (it reads nothing once that process is
 * gone, whatever takes its pid).
 *
 * Points come every 1 ms for the first 2 s (a short program still gets a
 * curve; in practice as often as the recording loop wakes, every 2 ms), and
 * at each process image's end, then every 10 ms (100 a second) up to 10
 * minutes, then at 1/60000
 * of the time recorded so far: a long recording adds about 42,000 points
 * per doubling of its length, never more. With many processes the interval
 * grows so the reads stay under ~2 % of a core. */
#ifndef KILN_COLLECT_TIMELINE_H
#define KILN_COLLECT_TIMELINE_H

#include <stdbool.h>
#include <stdint.h>
#include "stream/records.h"
#include "stream/stream.h"

struct timeline;

/* start: the recording's start (CLOCK_MONOTONIC ns). */
struct timeline *timeline__new(uint64_t start);
void timeline__free(struct timeline *t);
/* Whether a point is due at now (CLOCK_MONOTONIC ns), for nlive processes. */
bool timeline__due(const struct timeline *t, uint64_t now, size_t nlive);
/* RSS of pid in bytes, or TIMELINE_NO_RSS (gone, or not readable). */
uint64_t timeline__rss(struct timeline *t, uint32_t pid);
/* pid ended: close what was kept open for it. */
void timeline__forget(struct timeline *t, uint32_t pid);
/* Add an entry to the point being made (at most TIMELINE_MAX_ENTRIES). */
void timeline__add(struct timeline *t, uint32_t pid, int64_t heap, uint64_t rss);
/* Write the point (if it has entries) as one TIMELINE record, stamped now. */
void timeline__write(struct timeline *t, struct stream_writer *w, uint64_t now);
/* Points written so far. */
uint64_t timeline__points(const struct timeline *t);

#endif
