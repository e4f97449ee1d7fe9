/* Known answer for the order of events across threads: blocks freed by
 * another thread than the one that made them, and handed back to their
 * maker by the allocator. THREADS threads (default 8) in a circle; each,
 * ROUNDS times (default 2,000): makes 64 blocks in produce() and passes
 * them to the next thread, then frees the 64 the previous one passed it.
 * glibc keeps 7 freed blocks of a size per thread; the rest go back to the
 * arena of the thread that made them, which makes its next blocks from
 * them: the same address, freed in one thread and allocated in another,
 * hundreds of thousands of times. Each thread also makes one temporary
 * block per round in scratch() and leaks one of 100 bytes in leak_each().
 * Known facts: produce THREADS x ROUNDS x 64 calls, scratch THREADS x
 * ROUNDS, leak_each THREADS (100 bytes each leaked); nothing else leaks.
 *   usage: xthread_free [THREADS] [ROUNDS] */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH 64
#define MAXT 64

struct mailbox {
	void *blocks[BATCH];
	atomic_int full; /* 1: blocks holds a batch for the owner */
};

static struct mailbox box[MAXT];
static int nthreads, rounds;

__attribute__((noinline)) void *produce(size_t n) { return malloc(n); }
__attribute__((noinline)) void *scratch(void) { return malloc(200); }
__attribute__((noinline)) void *leak_each(void) { return malloc(100); }

static void *run(void *arg)
{
	int me = (int)(size_t)arg, next = (me + 1) % nthreads;
	void *mine[BATCH];
	void *keep = leak_each();
	__asm__ volatile("" : : "r"(keep) : "memory");
	for (int r = 0; r < rounds; r++) {
		for (int i = 0; i < BATCH; i++) {
			mine[i] = produce(48 + (size_t)(i % 4) * 16);
			memset(mine[i], me, 8);
		}
		while (atomic_load_explicit(&box[next].full, memory_order_acquire))
			sched_yield(); /* the next thread has not taken the last batch yet */
		memcpy(box[next].blocks, mine, sizeof(mine));
		atomic_store_explicit(&box[next].full, 1, memory_order_release);
		while (!atomic_load_explicit(&box[me].full, memory_order_acquire))
			sched_yield();
		for (int i = 0; i < BATCH; i++)
			free(box[me].blocks[i]);
		atomic_store_explicit(&box[me].full, 0, memory_order_release);
		void *s = scratch();
		__asm__ volatile("" : : "r"(s) : "memory");
		free(s);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	nthreads = argc > 1 ? atoi(argv[1]) : 8;
	rounds = argc > 2 ? atoi(argv[2]) : 2000;
	if (nthreads < 2 || nthreads > MAXT || rounds < 1) {
		fprintf(stderr, "usage: xthread_free [THREADS 2..64] [ROUNDS]\n");
		return 2;
	}
	pthread_t th[MAXT];
	for (int i = 0; i < nthreads; i++)
		pthread_create(&th[i], NULL, run, (void *)(size_t)i);
	for (int i = 0; i < nthreads; i++)
		pthread_join(th[i], NULL);
	printf("xthread_free %d threads x %d rounds\n", nthreads, rounds);
	return 0;
}
