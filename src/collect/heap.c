/* Heap accounting (see heap.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "collect/heap.h"
#include "util/util.h"

struct hcell {
	int64_t alloc_bytes, alloc_count, temp_count;
	int64_t live_bytes, live_count, peak_bytes, frozen_bytes, frozen_count;
	uint64_t mod_seq;
	uint32_t proc, thread;
	bool declared;
	bool w_dirty;        /* in heap.dirty */
	int64_t w[HW__N];    /* what changed since the last heap__deltas */
};

/* Live blocks of one process image: addr -> size, cell (any address,
 * 0 included: util's u64map takes every key). */
struct hproc {
	struct u64map live;
	int64_t cur, peak, wmax; /* wmax: the most live since the last heap__window */
	uint64_t unknown_frees;
	uint64_t over_live; /* allocations at an address still live */
};

struct hthread {
	uint64_t last_alloc;
	bool has_last;
};

struct heap {
	struct hcell *cells;
	size_t ncells, ccells;
	struct hproc *procs;
	size_t nprocs, cprocs;
	struct hthread *thr;
	size_t nthr, cthr;
	/* every process image together: the peak is one moment of the recording */
	int64_t cur, peak, wmax;
	uint64_t seq, peak_seq;
	uint32_t *dirty; /* cells changed since the last heap__deltas */
	size_t ndirty, cdirty;
	uint64_t sample; /* --heap-sample mean, 0: every allocation is seen */
	uint64_t rng;    /* the weights' rounding (fixed seed: one file, one answer) */
};

struct heap *heap__new(void)
{
	return xcalloc(1, sizeof(struct heap));
}

void heap__free(struct heap *h)
{
	if (!h)
		return;
	for (size_t i = 0; i < h->nprocs; i++)
		u64map__release(&h->procs[i].live);
	free(h->procs);
	free(h->cells);
	free(h->thr);
	free(h->dirty);
	free(h);
}

static struct hproc *proc_at(struct heap *h, uint32_t proc)
{
	if (proc >= h->nprocs) {
		ARR_GROW(h->procs, h->cprocs, (size_t)proc + 1);
		memset(h->procs + h->nprocs, 0, ((size_t)proc + 1 - h->nprocs) * sizeof(*h->procs));
		h->nprocs = (size_t)proc + 1;
	}
	return &h->procs[proc];
}

void heap__cell(struct heap *h, uint32_t cell, uint32_t proc, uint32_t thread)
{
	if (cell >= h->ncells) {
		ARR_GROW(h->cells, h->ccells, (size_t)cell + 1);
		memset(h->cells + h->ncells, 0, ((size_t)cell + 1 - h->ncells) * sizeof(*h->cells));
		h->ncells = (size_t)cell + 1;
	}
	if (thread >= h->nthr) {
		ARR_GROW(h->thr, h->cthr, (size_t)thread + 1);
		memset(h->thr + h->nthr, 0, ((size_t)thread + 1 - h->nthr) * sizeof(*h->thr));
		h->nthr = (size_t)thread + 1;
	}
	proc_at(h, proc);
	struct hcell *c = &h->cells[cell];
	if (!c->declared) {
		c->declared = true;
		c->proc = proc;
		c->thread = thread;
	}
}

bool heap__has_cell(const struct heap *h, uint32_t cell)
{
	return cell < h->ncells && h->cells[cell].declared;
}

/* Every event changes what is live in its cell: here the cell joins the
 * window's changed cells (heap__deltas), once. */
static void change(struct heap *h, struct hproc *p, struct hcell *c, int64_t bytes, int64_t count)
{
	uint64_t seq = ++h->seq;
	if (!c->w_dirty) {
		c->w_dirty = true;
		ARR_GROW(h->dirty, h->cdirty, h->ndirty + 1);
		h->dirty[h->ndirty++] = (uint32_t)(c - h->cells);
	}
	SAT_ADD(c->w[HW_LIVE_BYTES], bytes);
	SAT_ADD(c->w[HW_LIVE_COUNT], count);
	if (c->mod_seq <= h->peak_seq)
		c->peak_bytes = c->live_bytes;
	SAT_ADD(c->live_bytes, bytes);
	SAT_ADD(c->live_count, count);
	c->mod_seq = seq;
	SAT_ADD(p->cur, bytes);
	if (p->cur > p->peak)
		p->peak = p->cur;
	if (p->cur > p->wmax)
		p->wmax = p->cur;
	SAT_ADD(h->cur, bytes);
	if (h->cur > h->peak) {
		h->peak = h->cur;
		h->peak_seq = seq;
	}
	if (h->cur > h->wmax)
		h->wmax = h->cur;
}

/* A live block's v2: its cell, and (sampled) how many allocations it stands
 * for above the 32 bits (0: one). */
#define BLOCK_CELL(v2) ((uint32_t)(v2))
#define BLOCK_COUNT(v2) ((v2) >> 32 ? (int64_t)((v2) >> 32) : 1)

/* What the live block b (at addr) held in p is no longer live; the caller
 * removes or reuses its entry. */
static void drop_block(struct heap *h, struct hproc *p, uint64_t addr, const struct u64map_ent *b)
{
	struct hcell *c = &h->cells[BLOCK_CELL(b->v2)];
	change(h, p, c, -(int64_t)b->v1, -BLOCK_COUNT(b->v2));
	struct hthread *t = &h->thr[c->thread];
	if (t->has_last && t->last_alloc == addr) {
		c->temp_count++;
		t->has_last = false;
	}
}

bool heap__free_block(struct heap *h, uint32_t proc, uint64_t addr)
{
	struct hproc *p = proc_at(h, proc);
	struct u64map_ent *b = u64map__find(&p->live, addr);
	if (!b) {
		p->unknown_frees++;
		return false;
	}
	drop_block(h, p, addr, b);
	u64map__remove_at(&p->live, b);
	return true;
}

void heap__sample(struct heap *h, uint64_t mean)
{
	h->sample = mean;
	h->rng = 0x9e3779b97f4a7c15ull;
}

uint64_t heap__sampled(const struct heap *h)
{
	return h->sample;
}

/* How many allocations a sampled one of size bytes stands for: 1/P(taken),
 * P = 1 - exp(-size/mean) (the shim's rule, sample.h), rounded up or down
 * at random so that the rounding is unbiased too. */
static uint64_t sample_weight(struct heap *h, uint64_t size)
{
	double x = (double)(size ? size : 1) / (double)h->sample;
	double w = 1.0 / -expm1(-x);
	if (!(w < 4e9))
		w = 4e9;
	uint64_t k = (uint64_t)w;
	h->rng ^= h->rng << 13;
	h->rng ^= h->rng >> 7;
	h->rng ^= h->rng << 17;
	if ((double)(h->rng >> 11) / 9007199254740992.0 < w - (double)k)
		k++;
	return k ? k : 1;
}

void heap__alloc(struct heap *h, uint32_t cell, uint64_t addr, uint64_t size)
{
	if (!heap__has_cell(h, cell))
		return;
	struct hcell *c = &h->cells[cell];
	struct hproc *p = &h->procs[c->proc];
	bool created;
	struct u64map_ent *b = u64map__upsert(&p->live, addr, &created);
	if (!created) { /* a free we never saw: forget the old block first */
		p->over_live++;
		drop_block(h, p, addr, b);
	}
	uint64_t n = h->sample ? sample_weight(h, size) : 1;
	uint64_t bytes;
	if (__builtin_mul_overflow(size, n, &bytes) || bytes > INT64_MAX)
		bytes = INT64_MAX;
	b->v1 = bytes;
	b->v2 = cell | (n > 1 ? n << 32 : 0);
	SAT_ADD(c->alloc_bytes, (int64_t)bytes);
	SAT_ADD(c->alloc_count, (int64_t)n);
	SAT_ADD(c->w[HW_ALLOC_BYTES], (int64_t)bytes);
	SAT_ADD(c->w[HW_ALLOC_COUNT], (int64_t)n);
	change(h, p, c, (int64_t)bytes, (int64_t)n); /* marks the cell changed */
	if (h->sample)
		return; /* no temporaries: the allocations between two sampled ones are not seen */
	struct hthread *t = &h->thr[c->thread];
	t->last_alloc = addr;
	t->has_last = true;
}

void heap__end(struct heap *h, uint32_t proc)
{
	if (proc >= h->nprocs)
		return;
	struct hproc *p = &h->procs[proc];
	/* Freeze what is live as leaked, then forget the blocks: one moment of
	 * the recording, after which the image holds nothing (the kernel took
	 * its memory back), so a later, larger peak finds these cells empty. */
	uint64_t seq = ++h->seq;
	size_t it = 0;
	for (const struct u64map_ent *b; (b = u64map__next(&p->live, &it));) {
		struct hcell *c = &h->cells[BLOCK_CELL(b->v2)];
		if (c->mod_seq <= h->peak_seq)
			c->peak_bytes = c->live_bytes;
		c->mod_seq = seq;
		SAT_ADD(c->frozen_bytes, (int64_t)b->v1);
		SAT_ADD(c->frozen_count, BLOCK_COUNT(b->v2));
		SAT_ADD(c->live_bytes, -(int64_t)b->v1);
		SAT_ADD(c->live_count, -BLOCK_COUNT(b->v2));
	}
	u64map__clear(&p->live);
	SAT_ADD(h->cur, -p->cur);
	p->cur = 0;
}

void heap__deltas(struct heap *h, void (*fn)(void *arg, uint32_t cell, const int64_t d[HW__N]), void *arg)
{
	for (size_t i = 0; i < h->ndirty; i++) {
		struct hcell *c = &h->cells[h->dirty[i]];
		if (c->w[0] || c->w[1] || c->w[2] || c->w[3])
			fn(arg, h->dirty[i], c->w);
		memset(c->w, 0, sizeof(c->w));
		c->w_dirty = false;
	}
	h->ndirty = 0;
}

void heap__values(const struct heap *h, uint32_t cell, int64_t v[KM__COUNT])
{
	if (!heap__has_cell(h, cell))
		return;
	const struct hcell *c = &h->cells[cell];
	v[KM_ALLOC_BYTES] = c->alloc_bytes;
	v[KM_ALLOC_COUNT] = c->alloc_count;
	v[KM_TEMP_COUNT] = c->temp_count;
	v[KM_LEAK_BYTES] = sat_add(c->live_bytes, c->frozen_bytes);
	v[KM_LEAK_COUNT] = sat_add(c->live_count, c->frozen_count);
	v[KM_PEAK_BYTES] = c->mod_seq <= h->peak_seq ? c->live_bytes : c->peak_bytes;
}

void heap__live(const struct heap *h, uint32_t cell, int64_t *bytes, int64_t *count)
{
	*bytes = *count = 0;
	if (heap__has_cell(h, cell)) {
		*bytes = h->cells[cell].live_bytes;
		*count = h->cells[cell].live_count;
	}
}

uint64_t heap__unknown_frees(const struct heap *h, uint32_t proc)
{
	return proc < h->nprocs ? h->procs[proc].unknown_frees : 0;
}

uint64_t heap__over_live(const struct heap *h, uint32_t proc)
{
	return proc < h->nprocs ? h->procs[proc].over_live : 0;
}

int64_t heap__current(const struct heap *h, uint32_t proc)
{
	return proc < h->nprocs ? h->procs[proc].cur : 0;
}

int64_t heap__peak(const struct heap *h, uint32_t proc)
{
	return proc < h->nprocs ? h->procs[proc].peak : 0;
}

int64_t heap__total_peak(const struct heap *h)
{
	return h->peak;
}

int64_t heap__total_current(const struct heap *h)
{
	return h->cur;
}

int64_t heap__window(struct heap *h, uint32_t proc)
{
	int64_t *w = proc == HEAP_ALL ? &h->wmax : proc < h->nprocs ? &h->procs[proc].wmax : NULL;
	if (!w)
		return 0;
	int64_t m = *w;
	*w = proc == HEAP_ALL ? h->cur : h->procs[proc].cur;
	return m;
}
