/* Known answer for the shim's sequence hand-over: a process's first thread
 * numbers its events alone until a second thread makes a ring; that
 * thread's arrival, while the first allocates without pause, switches the
 * process to a shared counter. Done once per process image, so CHILDREN
 * forked children (default 20) each do it, one after another:
 *   main thread   own_alloc: 20,000 blocks of 48 bytes; from the 10,000th
 *                 on it hands each block to the second thread to free
 *                 (cross-thread frees right across the switch)
 *   second thread thread_alloc: 10,000 blocks of 80 bytes, freed; frees
 *                 what the main thread handed it
 *   leak_one      one block of 777 bytes, never freed
 * Known facts per child: own_alloc 20,000 calls, thread_alloc 10,000,
 * leak_one 1 (777 bytes leaked); nothing else of these leaks. The parent
 * allocates nothing of these. Exit status 0 when every child exited 0.
 *   usage: seq_handover [CHILDREN] */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define OWN 20000
#define HANDOVER 10000
#define THEIRS 10000
#define SLOTS 1024

static _Atomic(void *) slots[SLOTS];
static atomic_int done_handing;

__attribute__((noinline)) void *own_alloc(void) { return malloc(48); }
__attribute__((noinline)) void *thread_alloc(void) { return malloc(80); }
__attribute__((noinline)) void *leak_one(void) { return malloc(777); }

static void *second(void *arg)
{
	(void)arg;
	unsigned k = 0;
	for (int i = 0; i < THEIRS; i++) {
		void *p = thread_alloc();
		((volatile char *)p)[0] = 1;
		free(p);
		void *q = atomic_exchange(&slots[k++ % SLOTS], NULL);
		free(q);
	}
	/* the rest of what the main thread hands over */
	for (;;) {
		int fin = atomic_load(&done_handing);
		int left = 0;
		for (int s = 0; s < SLOTS; s++) {
			void *q = atomic_exchange(&slots[s], NULL);
			if (q)
				free(q);
			left |= q != NULL;
		}
		if (fin && !left)
			break;
	}
	return NULL;
}

static int child(void)
{
	pthread_t th;
	unsigned k = 0;
	for (int i = 0; i < OWN; i++) {
		void *p = own_alloc();
		((volatile char *)p)[0] = 1;
		if (i == HANDOVER && pthread_create(&th, NULL, second, NULL))
			return 1;
		if (i < HANDOVER) {
			free(p);
			continue;
		}
		/* hand it over: wait for a free slot */
		for (;; k++) {
			void *expect = NULL;
			if (atomic_compare_exchange_strong(&slots[k % SLOTS], &expect, p))
				break;
		}
	}
	atomic_store(&done_handing, 1);
	pthread_join(th, NULL);
	((volatile char *)leak_one())[0] = 1;
	return 0;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 20, bad = 0;
	for (int c = 0; c < n; c++) {
		pid_t pid = fork();
		if (pid < 0)
			return 1;
		if (pid == 0)
			_exit(child());
		int st;
		if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st))
			bad++;
	}
	printf("seq_handover: %d children, %d failed\n", n, bad);
	return bad != 0;
}
