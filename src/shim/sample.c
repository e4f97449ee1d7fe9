/* Heap sampling: the countdown's draws and the set of taken addresses (see
 * sample.h). Runs inside malloc: no allocation, no locks, no stdio. */
#include "shim/sample.h"
#include <math.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

uint64_t shim_sample_mean;
__thread int64_t shim_sample_left __attribute__((tls_model("initial-exec")));
uint8_t *shim_sample_filter;

static __thread uint64_t t_rng __attribute__((tls_model("initial-exec")));

/* The set: buckets of one cache line (8 addresses; 0 is a free way); an
 * address goes in the first free way of its bucket or of the next
 * SET_PROBE - 1. 2^15 buckets: 262,144 taken blocks live at once (128 GiB
 * of heap at the default mean), 2 MiB of address space, touched as used. */
#define SET_WAYS 8
#define SET_BUCKETS (1u << 15)
#define SET_PROBE 8
static uint64_t (*g_set)[SET_WAYS];
static uint64_t g_full;

bool shim_sample__start(uint64_t mean)
{
	if (mean && !g_set) {
		void *s = mmap(NULL, sizeof(*g_set) * SET_BUCKETS, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		void *f = mmap(NULL, sizeof(uint8_t) * SHIM_SAMPLE_FILTER, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (s == MAP_FAILED || f == MAP_FAILED) {
			if (s != MAP_FAILED)
				munmap(s, sizeof(*g_set) * SET_BUCKETS);
			if (f != MAP_FAILED)
				munmap(f, sizeof(uint8_t) * SHIM_SAMPLE_FILTER);
			return false;
		}
		g_set = s;
		shim_sample_filter = f;
	} else if (mean && g_set) {
		/* an earlier attach's taken blocks are not this recording's */
		madvise(g_set, sizeof(*g_set) * SET_BUCKETS, MADV_DONTNEED);
		madvise(shim_sample_filter, sizeof(uint8_t) * SHIM_SAMPLE_FILTER, MADV_DONTNEED);
	}
	__atomic_store_n(&shim_sample_mean, mean, __ATOMIC_RELEASE);
	return true;
}

/* xorshift64*, seeded per thread from its stack address and the clock */
static uint64_t rng_next(void)
{
	if (!t_rng) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		t_rng = ((uint64_t)(uintptr_t)&ts * 0x9e3779b97f4a7c15ull) ^ (uint64_t)ts.tv_nsec ^
			((uint64_t)ts.tv_sec << 32) ^ (uint64_t)gettid();
		if (!t_rng)
			t_rng = 1;
	}
	t_rng ^= t_rng >> 12;
	t_rng ^= t_rng << 25;
	t_rng ^= t_rng >> 27;
	return t_rng * 0x2545f4914f6cdd1dull;
}

/* Bytes to the next point: exponential of the mean, at least 1. */
static int64_t draw(void)
{
	double u = (double)((rng_next() >> 11) + 1) / 9007199254740993.0; /* (0, 1] */
	double d = -log(u) * (double)shim_sample_mean;
	if (d < 1)
		return 1;
	if (d > 4e18)
		return INT64_MAX / 2;
	return (int64_t)d;
}

static void filter_add(uint32_t h, int d)
{
	uint8_t *f = &shim_sample_filter[h & (SHIM_SAMPLE_FILTER - 1)];
	uint8_t v = __atomic_load_n(f, __ATOMIC_RELAXED);
	/* saturated stays saturated (a false pass costs a probe, nothing else) */
	while (v != UINT8_MAX && !(d < 0 && v == 0) &&
	       !__atomic_compare_exchange_n(f, &v, (uint8_t)(v + d), true, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

/* Swap from for to in the first way of h's buckets that holds from (0: a
 * free way). */
static bool set_swap(uint32_t h, uint64_t from, uint64_t to)
{
	for (uint32_t i = 0; i < SET_PROBE; i++) {
		uint64_t *b = g_set[((h >> 16) + i) & (SET_BUCKETS - 1)];
		for (int w = 0; w < SET_WAYS; w++) {
			uint64_t x = from;
			if (__atomic_load_n(&b[w], __ATOMIC_ACQUIRE) == from &&
			    __atomic_compare_exchange_n(&b[w], &x, to, false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
				return true;
		}
	}
	return false;
}

static bool set_add(void *p)
{
	uint32_t h = shim_sample__hash(p);
	filter_add(h, +1); /* before the address is in the set: a free that sees it passes */
	if (set_swap(h, 0, (uint64_t)(uintptr_t)p))
		return true;
	filter_add(h, -1);
	__atomic_add_fetch(&g_full, 1, __ATOMIC_RELAXED);
	return false;
}

bool shim_sample__cross(void *p, size_t n)
{
	int64_t c = (int64_t)(n ? n : 1);
	if (shim_sample_left + c == 0) {
		/* the countdown was 0: the thread's first allocation (TLS starts
		 * at 0; after a draw it is at least 1). Its first gap is drawn
		 * now; a gap longer than this block leaves it untaken */
		shim_sample_left = draw() - c;
		if (shim_sample_left > 0)
			return false;
	}
	shim_sample_left = draw(); /* memoryless: the next gap starts after this block */
	return set_add(p);
}

bool shim_sample__forget(void *p)
{
	uint32_t h = shim_sample__hash(p);
	if (!set_swap(h, (uint64_t)(uintptr_t)p, 0))
		return false;
	filter_add(h, -1);
	return true;
}

void shim_sample__restore(void *p)
{
	set_add(p);
}

uint64_t shim_sample__full(void)
{
	return __atomic_load_n(&g_full, __ATOMIC_RELAXED) ? __atomic_exchange_n(&g_full, 0, __ATOMIC_ACQ_REL) : 0;
}

void shim_sample__unfull(uint64_t n)
{
	__atomic_add_fetch(&g_full, n, __ATOMIC_RELAXED);
}
