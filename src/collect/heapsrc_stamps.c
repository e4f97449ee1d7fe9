/* Ordering the events of a process image that stamps them (include/kiln/
 * ring.h "stamps", src/shim/seq.c): its threads read the time stamp
 * counter rather than share one counter, so seqs have gaps and a missing
 * seq no longer says an event is on its way. The recorder takes an event
 * only below a watermark W, which it moves this way:
 *
 *   R = the counter now, in the image's seqs (rdtsc + base - tsc0)
 *   membarrier(GLOBAL_EXPEDITED): every thread of the image that runs passes
 *       a full barrier (one that does not has passed one when it stopped)
 *   W = R, lowered to hdr->busy of every ring whose thread is inside an
 *       event (its seq is at least that), and not moved at all while the
 *       image page counts a ring made that the recorder has not received
 *   then every ring is looked at again (heads read after the barrier)
 *
 * Why no event below W can come later: a thread says busy before it reads
 * the counter. If it read the counter before R, that read retired before
 * the barrier reached its core (or the thread was scheduled out), so its
 * busy store is seen now, or its event is published and seen now (the
 * head is read after busy, and busy is cleared after the head). A read
 * after R gives a seq above R. A thread whose ring the recorder does not
 * have yet is counted in page->made before the ring is sent and before its
 * first stamp, so the watermark waits for it.
 *
 * The seqs below base are the first thread's own count, from before the
 * image turned to stamps: dense, taken in order as ever, all before any
 * stamp (the owner takes its last seq before it publishes the event, and
 * may publish it after the second thread's first stamps).
 *
 * Nothing here is trusted more than the rings are: a forged page or busy
 * word can only hold the watermark, and a watermark held for STALL_NS is
 * passed (the rings not received are forgiven), as the dense order passes
 * a seq that never comes. */
#include <linux/membarrier.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "collect/heapsrc_int.h"
#include "kiln/kiln.h"

static uint64_t tsc_now(void)
{
#if defined(__x86_64__)
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi) : : "memory");
	return (uint64_t)hi << 32 | lo;
#else
	return 0; /* the shim never stamps here */
#endif
}

void stamps_ring_received(struct heapsrc *h, struct hgroup *g, int page_fd)
{
	g->rings_recv++;
	if (page_fd < 0)
		return;
	if (g->page) {
		close(page_fd);
		return;
	}
	size_t size;
	bool ok = heapsrc_sealed(page_fd, KILN_PAGE_SIZE, KILN_PAGE_SIZE, &size);
	void *p = ok ? mmap(NULL, KILN_PAGE_SIZE, PROT_READ, MAP_SHARED, page_fd, 0) : MAP_FAILED;
	close(page_fd);
	if (p == MAP_FAILED)
		return;
	struct kiln_image_page pg;
	memcpy(&pg, p, sizeof(pg)); /* once: the program may change it later */
	if (pg.magic != KILN_PAGE_MAGIC || pg.version != KILN_RING_VERSION || pg.nonce != g->nonce) {
		munmap(p, KILN_PAGE_SIZE);
		return;
	}
	g->page = p;
	h->stamped++;
	g->offset = pg.base - pg.tsc0;
	g->base = pg.base;
	g->wmark = 0;
	g->stall_wm = UINT64_MAX;
}

void stamps_release(struct hgroup *g)
{
	if (g->page)
		munmap(g->page, KILN_PAGE_SIZE);
	g->page = NULL;
}

/* Rings the image page counts as made and not failed that the recorder has
 * not received (nor given up on). */
static uint64_t rings_on_their_way(const struct hgroup *g)
{
	uint64_t made = __atomic_load_n(&g->page->made, __ATOMIC_ACQUIRE);
	uint64_t failed = __atomic_load_n(&g->page->failed, __ATOMIC_ACQUIRE);
	uint64_t known = g->rings_recv + g->forgive;
	return made > failed && made - failed > known ? made - failed - known : 0;
}

/* Move the group's watermark as far as it may go now (see above). */
static void watermark(struct heapsrc *h, struct hgroup *g)
{
	uint64_t r = tsc_now() + g->offset;
	if (syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) != 0) {
		heapsrc_refresh_idle(h, g);
		return; /* the shim registered, so the kernel has it; if not, the stall passes */
	}
	uint64_t w = rings_on_their_way(g) ? g->wmark : r; /* a ring on its way: hold */
	for (size_t i = 0; i < g->n; i++) {
		struct hring *rg = g->rings[i];
		if (rg->corrupt)
			continue;
		uint64_t busy = __atomic_load_n(&rg->hdr->busy, __ATOMIC_ACQUIRE);
		if (busy && busy < w)
			w = busy;
	}
	heapsrc_refresh_idle(h, g); /* heads read after busy */
	if (w > g->wmark)
		g->wmark = w;
}

int stamps_gate(struct heapsrc *h, struct hgroup *g, uint64_t seq, int *marks)
{
	if (seq < g->base || g->next_seq < g->base) {
		/* the first thread's own count (below base): dense, and before
		 * every stamp. Taken in its order; while it is not all taken, its
		 * last event may still be on its way (the owner counts before it
		 * publishes): wait for it as the dense order does */
		return seq == g->next_seq || heapsrc_held_too_long(g, &g->stall_seq, g->next_seq);
	}
	if (seq < g->wmark)
		return 1;
	if (*marks < 2) {
		(*marks)++;
		watermark(h, g);
		return -1;
	}
	/* held: a thread inside an event, or a ring not received yet */
	if (!heapsrc_held_too_long(g, &g->stall_wm, g->wmark))
		return 0;
	g->forgive += rings_on_their_way(g); /* counted, never received: will not come */
	return 1;
}
