/* Memory over time (see timeline.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "collect/timeline.h"
#include "util/util.h"

struct timeline {
	uint64_t start, last; /* CLOCK_MONOTONIC ns; last: the last point */
	struct u64map fds;    /* pid -> statm descriptor + 1 (0: could not open) */
	struct rec_timeline_ent *ents;
	uint16_t n;
	uint64_t points;
	long page;
	struct buf b;
};

struct timeline *timeline__new(uint64_t start)
{
	struct timeline *t = xcalloc(1, sizeof(*t));
	t->start = t->last = start;
	u64map__init(&t->fds);
	t->ents = xcalloc(TIMELINE_MAX_ENTRIES, sizeof(*t->ents));
	t->page = sysconf(_SC_PAGESIZE);
	if (t->page <= 0)
		t->page = 4096;
	return t;
}

void timeline__free(struct timeline *t)
{
	if (!t)
		return;
	size_t it = 0;
	for (struct u64map_ent *e; (e = u64map__next(&t->fds, &it));)
		if (e->v1)
			close((int)e->v1 - 1);
	u64map__release(&t->fds);
	free(t->ents);
	buf__release(&t->b);
	free(t);
}

static uint64_t interval(const struct timeline *t, uint64_t now, size_t nlive)
{
	uint64_t el = now > t->start ? now - t->start : 0, iv;
	if (el < 2000000000ull)
		iv = 1000000;
	else if (el < 600000000000ull)
		iv = 10000000;
	else
		iv = el / 60000;
	uint64_t reads = (uint64_t)nlive * 200000; /* ~4 us a read: under 2 % of a core */
	return iv > reads ? iv : reads;
}

bool timeline__due(const struct timeline *t, uint64_t now, size_t nlive)
{
	return now >= t->last + interval(t, now, nlive);
}

uint64_t timeline__rss(struct timeline *t, uint32_t pid)
{
	bool added;
	struct u64map_ent *e = u64map__upsert(&t->fds, pid, &added);
	if (added) {
		char path[64];
		snprintf(path, sizeof(path), "/proc/%u/statm", pid);
		int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		e->v1 = fd >= 0 ? (uint64_t)fd + 1 : 0;
	}
	if (!e->v1)
		return TIMELINE_NO_RSS;
	char buf[128];
	ssize_t k = pread((int)e->v1 - 1, buf, sizeof(buf) - 1, 0);
	if (k <= 0)
		return TIMELINE_NO_RSS;
	buf[k] = 0;
	unsigned long long size, resident;
	if (sscanf(buf, "%llu %llu", &size, &resident) != 2)
		return TIMELINE_NO_RSS;
	return (uint64_t)resident * (uint64_t)t->page;
}

void timeline__forget(struct timeline *t, uint32_t pid)
{
	struct u64map_ent e;
	if (u64map__remove(&t->fds, pid, &e) && e.v1)
		close((int)e.v1 - 1);
}

void timeline__add(struct timeline *t, uint32_t pid, int64_t heap, uint64_t rss)
{
	if (t->n < TIMELINE_MAX_ENTRIES)
		t->ents[t->n++] = (struct rec_timeline_ent){pid, heap, rss};
}

void timeline__write(struct timeline *t, struct stream_writer *w, uint64_t now)
{
	t->last = now;
	if (!t->n)
		return;
	t->b.len = 0;
	rec_timeline__encode(&t->b, realtime_at(now), t->ents, t->n); /* now may be past (recorder_now) */
	stream_writer__record(w, REC_TIMELINE, t->b.data, t->b.len);
	t->n = 0;
	t->points++;
}

uint64_t timeline__points(const struct timeline *t)
{
	return t->points;
}
