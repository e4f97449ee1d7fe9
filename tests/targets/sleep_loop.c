/* A single-threaded program that sleeps in nanosleep (a system call that
 * restarts through the kernel's restart block) between small allocations:
 * an attach finds it asleep nearly always.
 *   usage: sleep_loop N MICROSECONDS
 * N times (N = 0: until SIGUSR2): malloc(100) (every other one freed), then
 * one nanosleep of MICROSECONDS. Prints "sleep_loop slept S s in N sleeps,
 * E cut short" (a sleep an attach cut short returns -1 EINTR: E counts them;
 * the sleep SIGUSR2 ends is not counted) and exits 0.
 * Known facts: S is at least N x MICROSECONDS, and E is 0. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static volatile sig_atomic_t told;
static void on_usr2(int sig) { (void)sig; told = 1; }
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(int argc, char **argv)
{
	if (argc < 3) return 2;
	int n = atoi(argv[1]);
	long us = atol(argv[2]);
	double slept = 0;
	int cut = 0;
	struct sigaction sa = {.sa_handler = on_usr2};
	sigaction(SIGUSR2, &sa, NULL);
	printf("started\n"); fflush(stdout);
	int i;
	for (i = 0; (n == 0 || i < n) && !told; i++) {
		void *p = malloc(100);
		__asm__ volatile("" : : "r"(p) : "memory");
		if (i % 2) free(p);
		struct timespec ts = {us / 1000000, (us % 1000000) * 1000}, rem;
		double t = now();
		if (nanosleep(&ts, &rem) < 0 && errno == EINTR && !told) cut++;
		slept += now() - t;
	}
	printf("sleep_loop slept %.3f s in %d sleeps, %d cut short\n", slept, i, cut);
	return 0;
}
