/* collect/heap.c: alloc/free/realloc sequences as the recorder feeds them,
 * checked against hand-counted leak, peak, temporaries. */
#include <criterion/criterion.h>
#include "collect/heap.h"

static int64_t val(struct heap *h, uint32_t cell, int metric)
{
	int64_t v[KM__COUNT] = {0};
	heap__values(h, cell, v);
	return v[metric];
}

/* a realloc as the shim publishes it: FREE old (or NOP on failure), ALLOC new */
static void realloc_ok(struct heap *h, uint32_t proc, uint32_t cell, uint64_t old, uint64_t p, uint64_t n)
{
	heap__free_block(h, proc, old);
	heap__alloc(h, cell, p, n);
}

Test(heap, leak_peak_temp)
{
	struct heap *h = heap__new();
	heap__cell(h, 0, 0, 0); /* stack A, thread 0 */
	heap__cell(h, 1, 0, 0); /* stack B, thread 0 */
	heap__alloc(h, 0, 0x1000, 100);
	heap__alloc(h, 1, 0x2000, 1000);
	heap__alloc(h, 0, 0x4000, 0);   /* the thread allocates again... */
	heap__free_block(h, 0, 0x2000); /* ...so this one is no temporary */
	heap__alloc(h, 1, 0x3000, 50);
	heap__free_block(h, 0, 0x3000); /* freed before anything else: temporary */
	cr_assert_eq(val(h, 0, KM_LEAK_BYTES), 100);
	cr_assert_eq(val(h, 1, KM_LEAK_BYTES), 0);
	cr_assert_eq(val(h, 1, KM_TEMP_COUNT), 1);
	cr_assert_eq(val(h, 1, KM_ALLOC_BYTES), 1050);
	cr_assert_eq(val(h, 1, KM_ALLOC_COUNT), 2);
	/* the peak was 1100 B: A had 100, B had 1000 */
	cr_assert_eq(heap__peak(h, 0), 1100);
	cr_assert_eq(val(h, 0, KM_PEAK_BYTES), 100);
	cr_assert_eq(val(h, 1, KM_PEAK_BYTES), 1000);
	heap__end(h, 0);
	cr_assert_eq(val(h, 0, KM_LEAK_COUNT), 2);
	cr_assert_eq(val(h, 0, KM_PEAK_BYTES), 100);
	cr_assert_eq(val(h, 1, KM_PEAK_BYTES), 1000);
	heap__free(h);
}

Test(heap, peak_moves_to_the_largest_moment)
{
	struct heap *h = heap__new();
	heap__cell(h, 0, 0, 0);
	heap__cell(h, 1, 0, 0);
	heap__alloc(h, 0, 0x10, 500); /* 500 */
	heap__free_block(h, 0, 0x10);  /* 0 */
	heap__alloc(h, 1, 0x20, 300);  /* 300 */
	heap__alloc(h, 1, 0x30, 300);  /* 600: the new peak, all in B */
	heap__free_block(h, 0, 0x20);
	cr_assert_eq(heap__peak(h, 0), 600);
	cr_assert_eq(val(h, 0, KM_PEAK_BYTES), 0);
	cr_assert_eq(val(h, 1, KM_PEAK_BYTES), 600);
	cr_assert_eq(heap__current(h, 0), 300);
	heap__free(h);
}

Test(heap, failed_realloc_and_realloc_zero)
{
	struct heap *h = heap__new();
	heap__cell(h, 0, 0, 0);
	heap__cell(h, 1, 0, 0);
	heap__alloc(h, 0, 0x100, 256);
	/* 100 failed reallocs: the shim publishes a NOP, the heap sees nothing */
	realloc_ok(h, 0, 1, 0x100, 0x200, 512); /* one that works, moving */
	cr_assert_eq(val(h, 0, KM_LEAK_BYTES), 0);
	cr_assert_eq(val(h, 1, KM_LEAK_BYTES), 512);
	realloc_ok(h, 0, 1, 0x200, 0x200, 1024); /* in place */
	cr_assert_eq(val(h, 1, KM_LEAK_BYTES), 1024);
	cr_assert_eq(val(h, 1, KM_LEAK_COUNT), 1);
	heap__free_block(h, 0, 0x200); /* realloc(p, 0): a free */
	cr_assert_eq(val(h, 1, KM_LEAK_COUNT), 0);
	for (int m = 0; m < KM__COUNT; m++) {
		cr_assert_geq(val(h, 0, m), 0);
		cr_assert_geq(val(h, 1, m), 0);
	}
	heap__free(h);
}

Test(heap, address_zero_and_max_are_blocks_like_any)
{
	struct heap *h = heap__new();
	heap__cell(h, 0, 0, 0);
	heap__alloc(h, 0, 0, 10);
	heap__alloc(h, 0, UINT64_MAX, 20);
	cr_assert_eq(val(h, 0, KM_LEAK_COUNT), 2);
	cr_assert(heap__free_block(h, 0, 0));
	cr_assert_not(heap__free_block(h, 0, 0)); /* freed once only */
	cr_assert(heap__free_block(h, 0, UINT64_MAX));
	cr_assert_eq(val(h, 0, KM_LEAK_COUNT), 0);
	cr_assert_eq(heap__unknown_frees(h, 0), 1);
	heap__free(h);
}

/* An allocation at an address still live: the free between was not seen
 * (lost, or taken out of order across threads). Counted, and the old block
 * is taken as freed there, so nothing is counted live twice. */
Test(heap, allocations_over_a_live_block_are_counted)
{
	struct heap *h = heap__new();
	heap__cell(h, 0, 0, 0);
	heap__cell(h, 1, 0, 1);
	heap__alloc(h, 0, 0x1000, 100);
	heap__alloc(h, 1, 0x1000, 40); /* another thread, same address: a free missed */
	cr_assert_eq(heap__over_live(h, 0), 1);
	cr_assert_eq(val(h, 0, KM_LEAK_BYTES), 0);
	cr_assert_eq(val(h, 1, KM_LEAK_BYTES), 40);
	cr_assert_eq(heap__current(h, 0), 40);
	cr_assert(heap__free_block(h, 0, 0x1000));
	cr_assert_eq(heap__current(h, 0), 0);
	cr_assert_eq(val(h, 0, KM_ALLOC_COUNT), 1);
	cr_assert_eq(val(h, 1, KM_ALLOC_COUNT), 1);
	cr_assert_eq(heap__unknown_frees(h, 0), 0);
	cr_assert_eq(heap__over_live(h, 0), 1);
	heap__free(h);
}

Test(heap, unknown_frees_are_counted_never_negative)
{
	struct heap *h = heap__new();
	heap__cell(h, 0, 0, 0);
	for (uint64_t a = 1; a <= 40; a++)
		cr_assert_not(heap__free_block(h, 0, a * 16)); /* allocated before tracking */
	cr_assert_eq(heap__unknown_frees(h, 0), 40);
	cr_assert_eq(val(h, 0, KM_LEAK_COUNT), 0);
	cr_assert_eq(heap__current(h, 0), 0);
	heap__free(h);
}

Test(heap, address_reuse_across_threads)
{
	struct heap *h = heap__new();
	heap__cell(h, 0, 0, 0); /* thread 0 */
	heap__cell(h, 1, 0, 1); /* thread 1, same process */
	heap__alloc(h, 0, 0xabc0, 64);
	heap__free_block(h, 0, 0xabc0);  /* thread 1 frees it: a temporary of thread 0 */
	heap__alloc(h, 1, 0xabc0, 128); /* and gets the address again */
	cr_assert_eq(val(h, 0, KM_TEMP_COUNT), 1);
	cr_assert_eq(val(h, 0, KM_LEAK_BYTES), 0);
	cr_assert_eq(val(h, 1, KM_LEAK_BYTES), 128);
	/* a free the shim never saw: the old block is forgotten, not doubled */
	heap__alloc(h, 1, 0xabc0, 32);
	cr_assert_eq(val(h, 1, KM_LEAK_BYTES), 32);
	cr_assert_eq(val(h, 1, KM_LEAK_COUNT), 1);
	heap__free(h);
}

Test(heap, processes_are_apart_and_end_alone)
{
	struct heap *h = heap__new();
	heap__cell(h, 0, 0, 0);
	heap__cell(h, 1, 1, 1);
	heap__alloc(h, 0, 0x10, 7);
	heap__alloc(h, 1, 0x10, 9); /* the same address in another process */
	heap__end(h, 1);
	cr_assert_eq(val(h, 1, KM_LEAK_BYTES), 9);
	cr_assert(heap__free_block(h, 0, 0x10));
	cr_assert_eq(val(h, 0, KM_LEAK_BYTES), 0);
	cr_assert_eq(val(h, 1, KM_LEAK_BYTES), 9);
	heap__free(h);
}

Test(heap, many_blocks_against_a_reference)
{
	struct heap *h = heap__new();
	heap__cell(h, 0, 0, 0);
	static uint64_t live[20000];
	size_t n = 0;
	uint64_t rng = 88172645463325252ULL, bytes = 0;
	for (int it = 0; it < 400000; it++) {
		rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
		if (n < 20000 && (n == 0 || rng & 1)) {
			uint64_t a = (rng >> 20) << 4;
			bool dup = false;
			for (size_t i = 0; i < n && !dup; i++)
				dup = live[i] == a;
			if (dup)
				continue;
			heap__alloc(h, 0, a, 16);
			live[n++] = a;
			bytes += 16;
		} else {
			size_t i = (rng >> 7) % n;
			cr_assert(heap__free_block(h, 0, live[i]));
			live[i] = live[--n];
			bytes -= 16;
		}
	}
	cr_assert_eq(val(h, 0, KM_LEAK_COUNT), (int64_t)n);
	cr_assert_eq(heap__current(h, 0), (int64_t)bytes);
	heap__free(h);
}

/* peak_seq exec: 100 in the first image, which exec ends; 150 in the next.
 * The recording's peak is 150, all of it the second image's. */
Test(heap, peak_across_exec_is_one_moment)
{
	struct heap *h = heap__new();
	heap__cell(h, 0, 0, 0); /* before_exec, image 0 */
	heap__cell(h, 1, 1, 0); /* after_exec, image 1 (same pid, after exec) */
	heap__alloc(h, 0, 0x10, 100);
	heap__end(h, 0); /* exec */
	heap__alloc(h, 1, 0x10, 150);
	heap__free_block(h, 1, 0x10);
	cr_assert_eq(heap__total_peak(h), 150);
	cr_assert_eq(val(h, 0, KM_PEAK_BYTES), 0);
	cr_assert_eq(val(h, 1, KM_PEAK_BYTES), 150);
	cr_assert_eq(val(h, 0, KM_LEAK_BYTES), 100);
	cr_assert_eq(heap__peak(h, 0), 100);
	cr_assert_eq(heap__peak(h, 1), 150);
	heap__free(h);
}

/* Two processes whose blocks coexist: the peak is their sum at that moment,
 * and an image ending first keeps its share of an earlier peak. */
Test(heap, peak_of_coexisting_processes)
{
	struct heap *h = heap__new();
	heap__cell(h, 0, 0, 0);
	heap__cell(h, 1, 1, 1);
	heap__alloc(h, 0, 0x10, 70);
	heap__alloc(h, 1, 0x10, 50); /* 120: the peak */
	heap__end(h, 0);             /* 50 */
	heap__alloc(h, 1, 0x20, 60); /* 110 */
	cr_assert_eq(heap__total_peak(h), 120);
	cr_assert_eq(heap__total_current(h), 110);
	cr_assert_eq(val(h, 0, KM_PEAK_BYTES), 70);
	cr_assert_eq(val(h, 1, KM_PEAK_BYTES), 50);
	heap__alloc(h, 1, 0x30, 20); /* 130: a new peak, image 0 has nothing in it */
	cr_assert_eq(val(h, 0, KM_PEAK_BYTES), 0);
	cr_assert_eq(val(h, 1, KM_PEAK_BYTES), 130);
	heap__free(h);
}

/* Windows: the most live since the last read, restarting at the current
 * value; the largest window is the peak. */
Test(heap, windows_hold_their_maximum)
{
	struct heap *h = heap__new();
	heap__cell(h, 0, 0, 0);
	heap__alloc(h, 0, 0x10, 40);
	heap__alloc(h, 0, 0x20, 60);
	heap__free_block(h, 0, 0x20);
	cr_assert_eq(heap__window(h, 0), 100);
	cr_assert_eq(heap__window(h, HEAP_ALL), 100);
	cr_assert_eq(heap__window(h, 0), 40); /* nothing changed: what is live */
	heap__free_block(h, 0, 0x10);
	cr_assert_eq(heap__window(h, HEAP_ALL), 40);
	cr_assert_eq(heap__window(h, HEAP_ALL), 0);
	cr_assert_eq(heap__window(h, 7), 0); /* an image never seen */
	heap__free(h);
}

/* --heap-sample: each sampled allocation stands for 1/P allocations, P =
 * 1 - exp(-size/mean), rounded at random without bias; frees take back
 * exactly what their block stood for, so what is freed leaves nothing. */
Test(heap, sampled_weights)
{
	struct heap *h = heap__new();
	heap__sample(h, 1000);
	cr_assert_eq(heap__sampled(h), 1000);
	heap__cell(h, 0, 0, 0);
	heap__cell(h, 1, 0, 0);
	/* 10,000 blocks of 1 B at a mean of 1000: each stands for 1/(1-e^-0.001)
	 * = 1000.50 allocations (1000 or 1001) */
	for (uint64_t i = 0; i < 10000; i++)
		heap__alloc(h, 0, 0x10000 + 16 * i, 1);
	int64_t n = val(h, 0, KM_ALLOC_COUNT);
	cr_assert(n >= 10000 * 1000 && n <= 10000 * 1001, "count %lld", (long long)n);
	cr_assert(llabs(n - 10005000) < 2000, "rounding biased: %lld, want about 10,005,000", (long long)n);
	cr_assert_eq(val(h, 0, KM_ALLOC_BYTES), n); /* 1 B each */
	/* a block far larger than the mean is always taken: it stands for itself */
	heap__alloc(h, 1, 0x900000, 1 << 20);
	cr_assert_eq(val(h, 1, KM_ALLOC_COUNT), 1);
	cr_assert_eq(val(h, 1, KM_ALLOC_BYTES), 1 << 20);
	/* free all of stack 0: nothing of it leaks, exactly */
	for (uint64_t i = 0; i < 10000; i++)
		cr_assert(heap__free_block(h, 0, 0x10000 + 16 * i));
	cr_assert_eq(val(h, 0, KM_LEAK_BYTES), 0);
	cr_assert_eq(val(h, 0, KM_LEAK_COUNT), 0);
	/* the peak is the estimated live heap's: all of it at once */
	cr_assert_eq(heap__total_peak(h), n + (1 << 20));
	cr_assert_eq(val(h, 0, KM_PEAK_BYTES), n);
	/* no temporaries are claimed from a sampled stream */
	heap__alloc(h, 1, 0xa00000, 8);
	heap__free_block(h, 0, 0xa00000);
	cr_assert_eq(val(h, 1, KM_TEMP_COUNT), 0);
	/* the image ends: what is live is leaked with its weights */
	heap__end(h, 0);
	cr_assert_eq(val(h, 1, KM_LEAK_COUNT), 1);
	cr_assert_eq(val(h, 1, KM_LEAK_BYTES), 1 << 20);
	heap__free(h);
}
