/* Time windows (see windows.h). */
#include <stdlib.h>
#include <string.h>
#include "collect/windows.h"
#include "kiln/kiln.h"
#include "util/util.h"

#define WIN_MIN_NS 20000000ull     /* the shortest window */
#define WIN_PER_ELAPSED 64         /* a window is at least 1/64 of the time so far */
#define WIN_STRETCH_ENTRIES 524288 /* entries written per step of stretch */
#define WIN_MAX_ENTRIES 100000     /* per record: a larger window is split */

struct wcell {
	int64_t cpu, wall;
	bool dirty;
};

struct windows {
	uint64_t start, last;
	struct wcell *cells;
	size_t ncells, ccells;
	uint32_t *dirty;
	size_t ndirty, cdirty;
	struct buf rec;     /* the record being made */
	struct buf pending; /* closed records: {u32 len, payload}... */
	uint64_t t_ns;      /* the window's real time */
	uint64_t entries;   /* written so far (the stretch of the interval) */
	windows_key_fn key;
	void *arg;
};

struct windows *windows__new(uint64_t start)
{
	struct windows *w = xcalloc(1, sizeof(*w));
	w->start = w->last = start;
	buf__init(&w->rec);
	buf__init(&w->pending);
	return w;
}

void windows__free(struct windows *w)
{
	if (!w)
		return;
	free(w->cells);
	free(w->dirty);
	buf__release(&w->rec);
	buf__release(&w->pending);
	free(w);
}

void windows__sample(struct windows *w, uint32_t cell, int metric, int64_t n)
{
	if (cell >= w->ncells) {
		ARR_GROW(w->cells, w->ccells, (size_t)cell + 1);
		memset(w->cells + w->ncells, 0, ((size_t)cell + 1 - w->ncells) * sizeof(*w->cells));
		w->ncells = (size_t)cell + 1;
	}
	struct wcell *c = &w->cells[cell];
	if (!c->dirty) {
		c->dirty = true;
		ARR_GROW(w->dirty, w->cdirty, w->ndirty + 1);
		w->dirty[w->ndirty++] = cell;
	}
	if (metric == KM_WALL)
		SAT_ADD(c->wall, n);
	else
		SAT_ADD(c->cpu, n);
}

bool windows__due(const struct windows *w, uint64_t now)
{
	uint64_t el = now > w->start ? now - w->start : 0;
	uint64_t iv = el / WIN_PER_ELAPSED > WIN_MIN_NS ? el / WIN_PER_ELAPSED : WIN_MIN_NS;
	iv *= 1 + w->entries / WIN_STRETCH_ENTRIES;
	return now >= w->last + iv;
}

/* empty: write it even with no entry (the last record of a window that
 * had none: its time is an edge a reader can cut at) */
static void close_record(struct windows *w, bool empty)
{
	uint32_t n = rec_window__n(&w->rec);
	if (!n && !empty)
		return;
	uint32_t len = (uint32_t)w->rec.len;
	buf__put(&w->pending, &len, sizeof(len));
	buf__put(&w->pending, w->rec.data, w->rec.len);
	w->entries += n;
	rec_window__begin(&w->rec, w->t_ns);
}

static void entry(struct windows *w, uint32_t cell, int metric, int64_t v)
{
	if (!v)
		return;
	struct rec_count e = {0};
	w->key(w->arg, cell, &e);
	e.metric = (uint8_t)metric;
	e.value = v;
	rec_window__add(&w->rec, &e);
	if (rec_window__n(&w->rec) >= WIN_MAX_ENTRIES)
		close_record(w, false);
}

static void heap_entry(void *arg, uint32_t cell, const int64_t d[HW__N])
{
	struct windows *w = arg;
	entry(w, cell, KM_ALLOC_BYTES, d[HW_ALLOC_BYTES]);
	entry(w, cell, KM_ALLOC_COUNT, d[HW_ALLOC_COUNT]);
	entry(w, cell, KM_LIVE_BYTES, d[HW_LIVE_BYTES]);
	entry(w, cell, KM_LIVE_COUNT, d[HW_LIVE_COUNT]);
}

void windows__cut(struct windows *w, uint64_t now, struct heap *heap, windows_key_fn key, void *arg)
{
	w->last = now;
	w->key = key;
	w->arg = arg;
	w->t_ns = realtime_at(now); /* now may be past (recorder_now) */
	uint64_t before = w->pending.len;
	rec_window__begin(&w->rec, w->t_ns);
	for (size_t i = 0; i < w->ndirty; i++) {
		struct wcell *c = &w->cells[w->dirty[i]];
		entry(w, w->dirty[i], KM_CPU, c->cpu);
		entry(w, w->dirty[i], KM_WALL, c->wall);
		*c = (struct wcell){0};
	}
	w->ndirty = 0;
	if (heap)
		heap__deltas(heap, heap_entry, w);
	close_record(w, w->pending.len == before);
}

void windows__write(struct windows *w, struct stream_writer *sw)
{
	for (size_t off = 0; off + 4 <= w->pending.len;) {
		uint32_t len;
		memcpy(&len, w->pending.data + off, 4);
		stream_writer__record(sw, REC_WINDOW, w->pending.data + off + 4, len);
		off += 4 + len;
	}
	w->pending.len = 0;
}
