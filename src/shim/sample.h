/* Heap sampling (`kiln record --heap --heap-sample BYTES`): which
 * allocations the shim records, and which frees it must therefore send.
 *
 * An allocation is taken with the probability that a Poisson process over
 * the thread's allocated bytes, of mean gap BYTES, puts a point in it:
 * 1 - exp(-n/BYTES) (tcmalloc's, jemalloc prof's and Go's MemProfileRate
 * rule). Each thread counts down the bytes to its next point in its own
 * initial-exec TLS: an allocation not taken costs a subtraction and a
 * compare, touches nothing shared and calls no unwinder. The recorder
 * weighs what is taken (collect/heap.c); allocation events are the taken
 * ones, whatever the mode, so the ring format does not change.
 *
 * A free is sent only for an address taken and still live: taken addresses
 * are kept in a set shared by the process's threads (a free may come from
 * any thread), behind a filter of counters that a free not taken nearly
 * always stops at (one load of a small, read-mostly array). The set is
 * the shim's own memory, never the recorder's: the recorder trusts none of
 * it. A set too full to take an address leaves the allocation untaken and
 * counts it (sample_set_full). Mode 0 (the default) takes everything, and
 * every free is sent. */
#ifndef KILN_SHIM_SAMPLE_H
#define KILN_SHIM_SAMPLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The mean gap in bytes; 0: every allocation (exact). Set once per
 * recording, before any hook can see it, by shim_sample__start. */
extern uint64_t shim_sample_mean;
extern __thread int64_t shim_sample_left __attribute__((tls_model("initial-exec")));
extern uint8_t *shim_sample_filter;

#define SHIM_SAMPLE_FILTER (1u << 15) /* 32 KiB of counters: stays in the first caches */

/* Start sampling at mean bytes (0: exact). False when the set cannot be
 * made (the caller records nothing then: estimates from an unweighted
 * stream would be wrong). */
bool shim_sample__start(uint64_t mean);
/* The allocation at p (n bytes) crossed its thread's countdown: whether it
 * is taken (and then in the set). */
bool shim_sample__cross(void *p, size_t n);
/* p was taken and is live: take it out of the set (true); false when the
 * filter let a not-taken address through. */
bool shim_sample__forget(void *p);
/* A realloc that failed: the block p, forgotten before the call, is live
 * again. */
void shim_sample__restore(void *p);
/* Allocations that were to be taken but the set was full (and clears the
 * count); one not told after all goes back with shim_sample__unfull. */
uint64_t shim_sample__full(void);
void shim_sample__unfull(uint64_t n);

static inline uint32_t shim_sample__hash(const void *p)
{
	return (uint32_t)((((uint64_t)(uintptr_t)p >> 4) * 0x9e3779b97f4a7c15ull) >> 32);
}

/* Record the allocation of n bytes at p? */
static inline bool shim_sample__take(void *p, size_t n)
{
	if (__builtin_expect(!shim_sample_mean, 1))
		return true;
	int64_t c = (int64_t)(n ? n : 1);
	if (__builtin_expect((shim_sample_left -= c) > 0, 1))
		return false;
	return shim_sample__cross(p, n);
}

/* Send the free of p? (Before the real free: once freed, another thread may
 * be handed p and take it.) */
static inline bool shim_sample__free(void *p)
{
	if (__builtin_expect(!shim_sample_mean, 1))
		return true;
	if (__builtin_expect(!__atomic_load_n(&shim_sample_filter[shim_sample__hash(p) & (SHIM_SAMPLE_FILTER - 1)],
					      __ATOMIC_RELAXED),
			     1))
		return false;
	return shim_sample__forget(p);
}

#endif
