/* Draining the shim's rings (include/kiln/ring.h) into the recorder.
 *
 *   group = one process image (pid, nonce): its rings are merged by seq in a
 *   min-heap keyed by each ring's next seq, so the recorder sees the
 *   process's allocations and frees in the order they happened, at
 *   O(log rings) per event (O(1) while one ring's run continues).
 *
 *           heap of rings by front seq           idle rings (nothing ready)
 *             [r3:41] [r1:44] [r7:52]    ◄──     r2 r5 ... refreshed at each
 *              ▲ consume, advance, sift          round and at a gap
 *
 * A group ends when its process is gone (or a zombie), or when a newer image
 * of the same pid appears (exec); its rings are then drained whatever gaps
 * remain and its live blocks become leaks.
 *
 * Nothing in a ring is trusted: see ring_front and ring_corrupt. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "collect/heapsrc.h"
#include "collect/heapsrc_int.h"
#include "collect/python.h"
#include "collect/recorder.h"
#include "kiln/kiln.h"
#include "kiln/python.h"
#include "util/util.h"

struct heapsrc *heapsrc__new(struct recorder *r)
{
	struct heapsrc *h = xcalloc(1, sizeof(*h));
	h->r = r;
	u64map__init(&h->gidx);
	return h;
}

bool heapsrc__seen(const struct heapsrc *h)
{
	return h->seen;
}

uint64_t heapsrc__stamped(const struct heapsrc *h)
{
	return h->stamped;
}

static uint64_t group_key(uint32_t pid, uint64_t nonce)
{
	return hash_u64(nonce ^ ((uint64_t)pid << 17)) | 1;
}

static struct hgroup *group_get(struct heapsrc *h, uint32_t pid, uint64_t nonce)
{
	uint64_t key = group_key(pid, nonce);
	struct u64map_ent *e = u64map__find(&h->gidx, key);
	struct hgroup *g = e ? h->groups[e->v1] : NULL;
	if (g && (g->pid != pid || g->nonce != nonce)) { /* a hash collision: look further */
		g = NULL;
		for (size_t i = 0; i < h->ngroups && !g; i++)
			if (h->groups[i]->pid == pid && h->groups[i]->nonce == nonce)
				g = h->groups[i];
	}
	if (g) {
		g->ended = g->gone = false; /* a late ring of an image thought gone */
		return g;
	}
	g = xcalloc(1, sizeof(*g));
	u64map__init(&g->chain);
	g->pid = pid;
	g->nonce = nonce;
	/* A newer image of the same pid: the older one has exec'd away. */
	for (size_t i = h->ngroups; i-- > 0;)
		if (h->groups[i]->pid == pid && !h->groups[i]->ended) {
			h->groups[i]->ending = true;
			g->older = h->groups[i];
			break;
		}
	ARR_GROW(h->groups, h->cgroups, h->ngroups + 1);
	if (!e)
		u64map__upsert(&h->gidx, key, NULL)->v1 = h->ngroups;
	h->groups[h->ngroups++] = g;
	recorder__proc(h->r, pid);
	return g;
}

/* The stack table of the chain a ring continues (prev_id), or a new one. */
static struct stab *stab_get(struct hgroup *g, uint64_t ring_id, uint64_t prev_id)
{
	struct u64map_ent e;
	size_t idx;
	if (prev_id && u64map__remove(&g->chain, prev_id, &e)) {
		idx = e.v1;
	} else {
		idx = g->nstabs;
		ARR_GROW(g->stabs, g->cstabs, g->nstabs + 1);
		g->stabs[g->nstabs++] = xcalloc(1, sizeof(struct stab));
	}
	if (ring_id) /* 0 is no ring (the shim numbers from 1) */
		u64map__upsert(&g->chain, ring_id, NULL)->v1 = idx;
	return g->stabs[idx];
}

/* The parent pid of a live process, or 0. */
static uint32_t parent_of(uint32_t pid)
{
	unsigned long pp = 0;
	return proc_stat_scan((int)pid, " %*c %lu", &pp) == 1 ? (uint32_t)pp : 0;
}

/* A loss message names its process; one the recording has not seen is
 * believed only if it is alive and its parent was seen (a child whose first
 * ring failed): forged messages naming new pids would otherwise make the
 * recorder keep a process, and the profile a record, for each. */
void heapsrc__loss(struct heapsrc *h, const struct kiln_msg *m)
{
	if (m->cause >= HL__COUNT || !m->pid)
		return;
	if (!recorder__known(h->r, m->pid)) {
		uint32_t pp = parent_of(m->pid);
		if (!pp || !recorder__known(h->r, pp))
			return;
	}
	recorder__heap_loss(h->r, m->pid, (int)m->cause, m->count ? m->count : 1);
}

static void group_end(struct heapsrc *h, struct hgroup *g);

bool heapsrc_sealed(int fd, size_t lo, size_t hi, size_t *size)
{
	struct stat st;
	int seals = fcntl(fd, F_GET_SEALS);
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || seals < 0 ||
	    (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW) || st.st_size < (off_t)lo ||
	    st.st_size > (off_t)hi)
		return false;
	*size = (size_t)st.st_size;
	return true;
}

bool heapsrc_held_too_long(struct hgroup *g, uint64_t *at, uint64_t key)
{
	uint64_t now = now_ns();
	if (*at != key) {
		*at = key;
		g->stall_since = now;
		return false;
	}
	return now - g->stall_since >= STALL_NS;
}

void heapsrc__add_ring(struct heapsrc *h, const struct kiln_msg *m, int fd, int page_fd)
{
	size_t size = 0;
	bool ok = heapsrc_sealed(fd, KILN_RING_HDR_SIZE + 8 * (size_t)KILN_RING_WORDS_TINY,
				 KILN_RING_HDR_SIZE + 8 * (size_t)KILN_RING_WORDS_MAX, &size);
	if (ok && (h->nrings >= HEAPSRC_MAX_RINGS || h->mapped + size > HEAPSRC_MAX_BYTES)) {
		recorder__heap_loss(h->r, m->pid, HL_REFUSED, 1);
		ok = false;
	}
	void *p = ok ? mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : MAP_FAILED;
	close(fd);
	if (p == MAP_FAILED)
		goto refused;
	/* copy what defines the ring once; the program may change it later */
	struct kiln_ring_hdr hd;
	memcpy(&hd, p, sizeof(hd));
	uint64_t words = hd.words;
	if (hd.magic != KILN_RING_MAGIC || hd.version != KILN_RING_VERSION || hd.hdr_size != KILN_RING_HDR_SIZE ||
	    words < KILN_RING_WORDS_TINY || words > KILN_RING_WORDS_MAX || (words & (words - 1)) ||
	    size != KILN_RING_HDR_SIZE + 8 * words || !hd.pid) {
		munmap(p, size);
		goto refused;
	}
	struct hring *rg = xcalloc(1, sizeof(*rg));
	rg->hdr = p;
	rg->maplen = size;
	rg->data = (uint64_t *)((char *)p + KILN_RING_HDR_SIZE);
	rg->words = words;
	rg->mask = words - 1;
	rg->tail = rg->head = __atomic_load_n(&rg->hdr->tail, __ATOMIC_ACQUIRE);
	rg->pid = hd.pid;
	rg->tid = hd.tid;
	rg->front = NO_SEQ;
	rg->heap_idx = -1;
	rg->proc = recorder__proc(h->r, hd.pid);
	if (hd.ppid)
		recorder__fork(h->r, hd.pid, hd.ppid); /* knows the parent's maps if its own are gone */
	struct hgroup *g = group_get(h, hd.pid, hd.nonce);
	stamps_ring_received(h, g, page_fd);
	if (!g->maps_read) {
		/* the image's first ring: read its maps now, while it surely
		 * lives (a short-lived exec'd program may be gone before its
		 * stacks are named, and then only its addresses would show); an
		 * older image of the pid has exec'd away and wrote all it will:
		 * it is finished first, with the maps it had */
		if (g->older && !g->older->ended) {
			group_end(h, g->older);
			recorder__exec(h->r, hd.pid, NULL);
		}
		recorder__read_maps(h->r, hd.pid);
		g->maps_read = true;
	}
	/* the shim waits for this (at most 100 ms) before its process exits */
	__atomic_or_fetch(&((struct kiln_ring_hdr *)p)->rflags, RING_R_MAPS, __ATOMIC_RELEASE);
	rg->stab = stab_get(g, hd.ring_id, hd.prev_id);
	rg->ring_id = hd.ring_id;
	/* the thread's stack ids go on from its previous ring: read this one
	 * only once that one is drained */
	for (size_t i = 0; hd.prev_id && i < g->n; i++)
		if (g->rings[i]->ring_id == hd.prev_id && g->rings[i]->tid == hd.tid)
			rg->pred = g->rings[i];
	ARR_GROW(g->rings, g->cap, g->n + 1);
	g->rings[g->n++] = rg;
	h->nrings++;
	h->mapped += size;
	h->seen = true;
	return;
refused:
	if (page_fd >= 0)
		close(page_fd);
}

/* The ring broke a rule: tell its thread to stop, count the loss, and let
 * the group stop waiting for seqs that may never come. */
#define W(rg, i) ((rg)->data[((rg)->tail + (i)) & (rg)->mask])
static void ring_corrupt(struct heapsrc *h, struct hgroup *g, struct hring *rg)
{
	rg->corrupt = true;
	rg->front = NO_SEQ;
	__atomic_or_fetch(&rg->hdr->rflags, RING_R_CORRUPT, __ATOMIC_RELEASE);
	recorder__heap_loss(h->r, rg->pid, HL_CORRUPT, 1);
	g->lossy = true;
}

/* Consume STACK records at the front; set rg->front to the seq of the next
 * event (NO_SEQ when none is ready). Checks what the ring says. */
static bool ring_drained(struct hring *rg)
{
	return rg->corrupt || (__atomic_load_n(&rg->hdr->closed, __ATOMIC_ACQUIRE) &&
			       rg->tail == __atomic_load_n(&rg->hdr->head, __ATOMIC_ACQUIRE));
}

static void ring_front(struct heapsrc *h, struct hgroup *g, struct hring *rg)
{
	rg->front = NO_SEQ;
	if (rg->corrupt)
		return;
	if (rg->pred) {
		if (!ring_drained(rg->pred))
			return;
		rg->pred = NULL;
	}
	for (;;) {
		if (rg->head == rg->tail)
			rg->head = __atomic_load_n(&rg->hdr->head, __ATOMIC_ACQUIRE);
		uint64_t avail = rg->head - rg->tail;
		if (!avail)
			return;
		if (avail > rg->words)
			return ring_corrupt(h, g, rg);
		uint64_t w0 = W(rg, 0);
		unsigned type = w0 & 0xff;
		if (type == RING_STACK) {
			uint64_t n = (w0 >> 8) & 0xffffff;
			if (n > KILN_MAX_DEPTH || avail < n + 2 || W(rg, 1) != rg->stab->n || rg->stab->n >= (1u << 24))
				return ring_corrupt(h, g, rg);
			uint64_t ips[KILN_MAX_DEPTH];
			for (uint64_t i = 0; i < n; i++)
				ips[i] = W(rg, 2 + i);
			uint64_t npy = (w0 >> 40) & 0xff;
			uint32_t st;
			if (2 * npy > n || npy > KILN_MAX_DEPTH / 2)
				return ring_corrupt(h, g, rg); /* more Python frames than words */
			if (npy || recorder__python(h->r, rg->pid)) {
				struct pyframe pf[KILN_MAX_DEPTH / 2];
				uint64_t nn = n - 2 * npy;
				for (uint64_t i = 0; i < npy; i++) {
					uint64_t a = ips[nn + 2 * i], li = ips[nn + 2 * i + 1];
					if ((a & KILN_PY_TAG_MASK) != KILN_PY_TAG || (li & 0xffffffffu) >= (1u << 28))
						return ring_corrupt(h, g, rg);
					pf[i] = (struct pyframe){.code = a & KILN_PY_ADDR_MASK, .lasti = (uint32_t)li,
								 .first = (int32_t)(li >> 32), .has_first = true,
								 .last_of_call = (a & KILN_PY_ENTRY) != 0};
				}
				st = recorder__stack_py(h->r, rg->pid, ips, (int)nn, -1, -1, (w0 >> 32) & 1, pf, (int)npy);
			} else {
				st = recorder__stack(h->r, rg->pid, ips, (int)n, false, (w0 >> 32) & 1);
			}
			ARR_GROW(rg->stab->cells, rg->stab->cap, rg->stab->n + 1);
			rg->stab->cells[rg->stab->n++] = recorder__cell(h->r, rg->pid, rg->tid, st);
			rg->tail += n + 2;
			continue;
		}
		if (type == RING_PYCODE) {
			uint64_t n = (w0 >> 8) & 0xffffff;
			if (n < 4 || n > KILN_PYCODE_WORDS_MAX || avail < n)
				return ring_corrupt(h, g, rg);
			uint64_t w2 = W(rg, 2), w3 = W(rg, 3);
			unsigned qk = (w2 >> 8) & 0xff, fk = w2 & 0xff;
			uint64_t ql = w3 & 0xffff, fl = (w3 >> 16) & 0xffff, tl = w3 >> 32;
			if (ql > KILN_PYCODE_QUAL_MAX || fl > KILN_PYCODE_FILE_MAX || tl > KILN_PYCODE_TABLE_MAX ||
			    qk > 4 || fk > 4 || 4 + (ql * qk + fl * fk + tl + 7) / 8 != n)
				return ring_corrupt(h, g, rg);
			unsigned char bytes[KILN_PYCODE_WORDS_MAX * 8];
			for (uint64_t i = 4; i < n; i++) {
				uint64_t w = W(rg, i);
				memcpy(bytes + (i - 4) * 8, &w, 8);
			}
			recorder__python_code(h->r, rg->pid, W(rg, 1), (int32_t)(w2 >> 32), bytes, ql, qk, bytes + ql * qk,
					      fl, fk, bytes + ql * qk + fl * fk, tl);
			rg->tail += n;
			continue;
		}
		uint64_t need = type == RING_ALLOC ? 4 : 2, seq = w0 >> 8;
		if ((type != RING_ALLOC && type != RING_FREE && type != RING_NOP && type != RING_PYFIN) || avail < need ||
		    (rg->any && seq <= rg->last_seq))
			return ring_corrupt(h, g, rg);
		rg->front = seq;
		return;
	}
}

static void ring_consume(struct heapsrc *h, struct hgroup *g, struct hring *rg)
{
	uint64_t w0 = W(rg, 0);
	unsigned type = w0 & 0xff;
	if (type == RING_ALLOC) {
		uint64_t id = W(rg, 3), size = W(rg, 2);
		if (id >= rg->stab->n || size > HEAPSRC_MAX_BLOCK) /* a stack never defined, a size no block has */
			return ring_corrupt(h, g, rg);
		recorder__alloc_cell(h->r, rg->stab->cells[id], W(rg, 1), W(rg, 2));
		rg->tail += 4;
	} else {
		if (type == RING_FREE)
			recorder__free_in(h->r, rg->proc, W(rg, 1));
		else if (type == RING_PYFIN)
			recorder__python_final(h->r, rg->pid);
		rg->tail += 2;
	}
	rg->last_seq = w0 >> 8;
	rg->any = true;
}

/* ---- the min-heap of rings by front seq ---- */
static void heap_set(struct hgroup *g, size_t i, struct hent e)
{
	g->heap[i] = e;
	e.rg->heap_idx = (int)i;
}

static void sift_up(struct hgroup *g, size_t i)
{
	struct hent e = g->heap[i];
	while (i) {
		size_t up = (i - 1) / 2;
		if (g->heap[up].front <= e.front)
			break;
		heap_set(g, i, g->heap[up]);
		i = up;
	}
	heap_set(g, i, e);
}

static void sift_down(struct hgroup *g, size_t i)
{
	struct hent e = g->heap[i];
	for (;;) {
		size_t l = 2 * i + 1, m = i;
		uint64_t best = e.front;
		if (l < g->nheap && g->heap[l].front < best)
			m = l, best = g->heap[l].front;
		if (l + 1 < g->nheap && g->heap[l + 1].front < best)
			m = l + 1;
		if (m == i)
			break;
		heap_set(g, i, g->heap[m]);
		i = m;
	}
	heap_set(g, i, e);
}

static void heap_push(struct hgroup *g, struct hring *rg)
{
	ARR_GROW(g->heap, g->cheap, g->nheap + 1);
	g->heap[g->nheap] = (struct hent){rg->front, rg};
	rg->heap_idx = (int)g->nheap++;
	sift_up(g, g->nheap - 1);
}

static void heap_pop_top(struct hgroup *g)
{
	g->heap[0].rg->heap_idx = -1;
	if (--g->nheap) {
		heap_set(g, 0, g->heap[g->nheap]);
		sift_down(g, 0);
	}
}

/* Rings with nothing ready may have something now. */
void heapsrc_refresh_idle(struct heapsrc *h, struct hgroup *g)
{
	for (size_t i = 0; i < g->n; i++) {
		struct hring *rg = g->rings[i];
		if (rg->heap_idx >= 0)
			continue;
		ring_front(h, g, rg);
		if (rg->front != NO_SEQ)
			heap_push(g, rg);
	}
}

/* A thread's ring is drained: the ring that continues it may be read now. */
static void wake_successors(struct heapsrc *h, struct hgroup *g, struct hring *done)
{
	for (size_t i = 0; i < g->n; i++) {
		struct hring *rg = g->rings[i];
		if (rg->pred != done)
			continue;
		rg->pred = NULL;
		ring_front(h, g, rg);
		if (rg->front != NO_SEQ && rg->heap_idx < 0)
			heap_push(g, rg);
	}
}

/* Each ring's tail, and the group's progress in every ring (its next seq,
 * which every event taken moves on): a ring whose events come after the
 * others' sees the recorder at work. */
static void publish_tails(struct hgroup *g)
{
	for (size_t i = 0; i < g->n; i++)
		if (!g->rings[i]->corrupt) {
			__atomic_store_n(&g->rings[i]->hdr->tail, g->rings[i]->tail, __ATOMIC_RELEASE);
			__atomic_store_n(&g->rings[i]->hdr->beat, g->next_seq, __ATOMIC_RELEASE);
		}
}

static void ring_close(struct heapsrc *h, struct hring *rg)
{
	munmap(rg->hdr, rg->maplen);
	h->nrings--;
	h->mapped -= rg->maplen;
	free(rg);
}

/* Merge a group's rings in seq order. Returns events processed. */
static long group_drain(struct heapsrc *h, struct hgroup *g, bool force, long budget)
{
	long n = 0;
	bool refreshed = false;
	int marks = 0;
	heapsrc_refresh_idle(h, g);
	while (n < budget && g->nheap) {
		struct hring *top = g->heap[0].rg;
		uint64_t seq = g->heap[0].front;
		if (g->page && !force && !g->lossy) {
			/* stamps: seqs have gaps; the watermark says how far the
			 * rings' order is known */
			int gate = stamps_gate(h, g, seq, &marks);
			if (gate < 0)
				continue;
			if (!gate)
				break;
		} else if (seq > g->next_seq && !force && !g->lossy) {
			/* a seq still being written by another thread, perhaps in
			 * a ring that was idle a moment ago */
			if (!refreshed) {
				heapsrc_refresh_idle(h, g);
				refreshed = true;
				continue;
			}
			if (!heapsrc_held_too_long(g, &g->stall_seq, g->next_seq))
				break;
		}
		ring_consume(h, g, top);
		g->next_seq = seq + 1;
		refreshed = false;
		n++;
		ring_front(h, g, top);
		if (top->front != NO_SEQ) {
			g->heap[0].front = top->front;
			sift_down(g, 0); /* O(1) while the same ring's run goes on */
		} else {
			heap_pop_top(g);
			if (ring_drained(top))
				wake_successors(h, g, top);
		}
		if ((n & 4095) == 0)
			publish_tails(g);
	}
	publish_tails(g);
	/* losses the shims counted; rings of ended threads, drained: unmap */
	size_t k = 0;
	for (size_t i = 0; i < g->n; i++) {
		struct hring *rg = g->rings[i];
		/* closed is read first: a shim counts its last drops before it
		 * closes, so a closed ring's count read after is its final one */
		bool done = rg->heap_idx < 0 && ring_drained(rg);
		uint64_t dropped = __atomic_load_n(&rg->hdr->dropped, __ATOMIC_ACQUIRE);
		if (dropped > rg->dropped_seen) {
			recorder__heap_loss(h->r, rg->pid, HL_STOPPED, dropped - rg->dropped_seen);
			rg->dropped_seen = dropped;
		}
		uint64_t unsent = __atomic_load_n(&rg->hdr->unsent, __ATOMIC_ACQUIRE);
		if (unsent > rg->unsent_seen) {
			recorder__heap_loss(h->r, rg->pid, HL_NO_RING, unsent - rg->unsent_seen);
			rg->unsent_seen = unsent;
		}
		if (done)
			ring_close(h, rg);
		else
			g->rings[k++] = rg;
	}
	/* successors of rings closed now no longer wait for them */
	for (size_t i = 0; i < k; i++)
		if (g->rings[i]->pred) {
			bool alive = false;
			for (size_t j = 0; j < k && !alive; j++)
				alive = g->rings[j] == g->rings[i]->pred;
			if (!alive)
				g->rings[i]->pred = NULL;
		}
	g->n = k;
	return n;
}

static bool process_gone(uint32_t pid)
{
	char st = proc_state((int)pid, 0);
	return !st || st == 'Z' || st == 'X';
}

static void group_end(struct heapsrc *h, struct hgroup *g)
{
	group_drain(h, g, true, LONG_MAX);
	recorder__heap_end(h->r, g->pid);
	for (size_t i = 0; i < g->n; i++)
		ring_close(h, g->rings[i]);
	stamps_release(g);
	g->n = 0;
	g->nheap = 0;
	g->ended = true;
	g->ending = false;
}

long heapsrc__poll(struct heapsrc *h)
{
	uint64_t now = now_ns();
	long n = 0;
	bool check = now - h->last_check > 100000000ull;
	if (check)
		h->last_check = now;
	for (size_t i = 0; i < h->ngroups; i++) {
		struct hgroup *g = h->groups[i];
		if (g->ended || (g->older && !g->older->ended))
			continue; /* an older image of this pid must finish first */
		n += group_drain(h, g, false, 1 << 18);
		if (g->ending || g->gone)
			group_end(h, g);
		else if (check && process_gone(g->pid))
			g->gone = true;
	}
	return n;
}

void heapsrc__finish(struct heapsrc *h)
{
	for (size_t i = 0; i < h->ngroups; i++)
		if (!h->groups[i]->ended)
			group_end(h, h->groups[i]);
}

void heapsrc__free(struct heapsrc *h)
{
	if (!h)
		return;
	for (size_t i = 0; i < h->ngroups; i++) {
		struct hgroup *g = h->groups[i];
		for (size_t k = 0; k < g->n; k++)
			ring_close(h, g->rings[k]);
		for (size_t k = 0; k < g->nstabs; k++) {
			free(g->stabs[k]->cells);
			free(g->stabs[k]);
		}
		free(g->stabs);
		u64map__release(&g->chain);
		free(g->rings);
		free(g->heap);
		stamps_release(g);
		free(g);
	}
	free(h->groups);
	u64map__release(&h->gidx);
	free(h);
}
