/* How long a running program's threads are held up (an attach's cost).
 *   tick_gap T: T threads (default 100) each tick every millisecond and keep
 *   the longest gap between two ticks beyond the millisecond asked for.
 *   SIGUSR1 zeroes the gaps; SIGUSR2 prints "max_gap_us N threads_hit K"
 *   (K: threads that saw a gap above 5 ms); SIGTERM ends it (exit 0).
 * Known: on an idle machine every gap stays well under a millisecond; a
 * tool that stops all threads shows up in every thread, one that stops one
 * thread in one. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
static int pfd[2];
static long *gaps;
static volatile int reset_gen;
static long now_us(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000L + t.tv_nsec / 1000; }
static void *ticker(void *a)
{
	long *g = a, last = now_us();
	int gen = reset_gen;
	for (;;) {
		usleep(1000);
		long t = now_us(), d = t - last - 1000;
		if (gen != reset_gen) { gen = reset_gen; *g = 0; }
		else if (d > *g) *g = d;
		last = t;
	}
	return NULL;
}
static void on_sig(int s) { char c = s == SIGUSR1 ? 'z' : s == SIGUSR2 ? 'p' : 'q'; if (write(pfd[1], &c, 1) < 0) {} }
int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 100;
	if (n < 1 || pipe(pfd)) return 1;
	gaps = calloc((size_t)n, sizeof(*gaps));
	struct sigaction sa = {0}; sa.sa_handler = on_sig; sa.sa_flags = SA_RESTART;
	sigaction(SIGUSR1, &sa, NULL); sigaction(SIGUSR2, &sa, NULL); sigaction(SIGTERM, &sa, NULL);
	for (int i = 0; i < n; i++) { pthread_t t; pthread_create(&t, NULL, ticker, &gaps[i]); }
	printf("ready %d\n", (int)getpid()); fflush(stdout);
	char c;
	while (read(pfd[0], &c, 1) == 1) {
		if (c == 'z') reset_gen++;
		else if (c == 'p') {
			long m = 0; int hit = 0;
			for (int i = 0; i < n; i++) { if (gaps[i] > m) m = gaps[i]; if (gaps[i] > 5000) hit++; }
			printf("max_gap_us %ld threads_hit %d\n", m, hit); fflush(stdout);
		} else break;
	}
	return 0;
}
