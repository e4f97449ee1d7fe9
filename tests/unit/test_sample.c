/* shim/sample.c, the shim's heap sampling: which allocations are taken (a
 * Poisson process over bytes), and the set that says which frees to send.
 * Built into the test as it is into the shim. */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include "../../src/shim/sample.c"

/* Exact mode (mean 0): everything is taken, every free sent. */
Test(sample, exact_mode_takes_all)
{
	cr_assert(shim_sample__start(0));
	for (uintptr_t a = 16; a < 16000; a += 16)
		cr_assert(shim_sample__take((void *)a, 8));
	cr_assert(shim_sample__free((void *)16));
}

/* P(taken) = 1 - exp(-n/mean), whatever the sizes: 64-byte blocks at a mean
 * of 4096 are taken 1.55 % of the time; 1 MiB blocks always. Every taken
 * block's free is sent once; no free of a block not taken is sent. */
Test(sample, rate_and_frees)
{
	cr_assert(shim_sample__start(4096));
	enum { N = 400000 };
	static char taken[N];
	long k = 0;
	for (long i = 0; i < N; i++) {
		taken[i] = shim_sample__take((void *)(uintptr_t)(0x100000 + 64 * i), 64);
		k += taken[i];
	}
	double want = N * -expm1(-64.0 / 4096);
	cr_assert(fabs(k - want) < 6 * sqrt(want), "taken %ld, want about %.0f", k, want);
	long sent = 0, wrong = 0;
	for (long i = 0; i < N; i++) {
		bool s = shim_sample__free((void *)(uintptr_t)(0x100000 + 64 * i));
		sent += s;
		wrong += s != taken[i];
	}
	cr_assert_eq(wrong, 0, "%ld frees sent for blocks not taken, or not sent for taken ones", wrong);
	cr_assert_eq(sent, k);
	/* a second free of the same addresses sends nothing */
	for (long i = 0; i < N; i++)
		cr_assert(!shim_sample__free((void *)(uintptr_t)(0x100000 + 64 * i)));
	for (int i = 0; i < 100; i++)
		cr_assert(shim_sample__take((void *)(uintptr_t)(0x90000000 + (i << 20)), 1 << 20));
	for (int i = 0; i < 100; i++)
		cr_assert(shim_sample__free((void *)(uintptr_t)(0x90000000 + (i << 20))));
}

/* A realloc that failed puts its block back: its later free is sent. */
Test(sample, restore)
{
	cr_assert(shim_sample__start(1));
	void *p = (void *)0x5550;
	cr_assert(shim_sample__take(p, 4096));
	cr_assert(shim_sample__free(p));
	shim_sample__restore(p);
	cr_assert(shim_sample__free(p));
	cr_assert(!shim_sample__free(p));
}

/* More taken blocks live than the set holds: the rest are left untaken and
 * counted, never taken without their free being followed. */
Test(sample, full_set_counted)
{
	cr_assert(shim_sample__start(1)); /* every allocation crosses a point */
	(void)shim_sample__full();
	long in = 0, n = SET_BUCKETS * SET_WAYS + 5000;
	for (long i = 0; i < n; i++)
		in += shim_sample__take((void *)(uintptr_t)(0x10000000 + 16 * i), 4096);
	uint64_t full = shim_sample__full();
	cr_assert_eq((long)full + in, n);
	cr_assert(full >= 5000, "full %llu", (unsigned long long)full);
	long out = 0;
	for (long i = 0; i < n; i++)
		out += shim_sample__free((void *)(uintptr_t)(0x10000000 + 16 * i));
	cr_assert_eq(out, in);
	cr_assert_eq(shim_sample__full(), 0);
}

/* Threads take and free at once, some freeing what others took: every
 * taken block's free is sent exactly once. */
static long thr_taken[4], thr_sent[4];
static void *churn(void *arg)
{
	long t = (long)arg;
	for (long i = 0; i < 200000; i++) {
		void *p = (void *)(uintptr_t)(((uint64_t)t << 40) + 32 * (uint64_t)(i % 5000) + 0x1000);
		if (shim_sample__take(p, 48)) {
			thr_taken[t]++;
			cr_assert(shim_sample__free(p));
			thr_sent[t]++;
		}
	}
	return NULL;
}
Test(sample, threads)
{
	cr_assert(shim_sample__start(512));
	pthread_t th[4];
	for (long t = 0; t < 4; t++)
		pthread_create(&th[t], NULL, churn, (void *)t);
	for (int t = 0; t < 4; t++)
		pthread_join(th[t], NULL);
	for (int t = 0; t < 4; t++) {
		cr_assert(thr_taken[t] > 10000, "thread %d took %ld", t, thr_taken[t]);
		cr_assert_eq(thr_taken[t], thr_sent[t]);
	}
}
