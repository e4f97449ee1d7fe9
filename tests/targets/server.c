/* A two-thread server for attach tests: busy_thread splits its CPU 2:1
 * between work_two and work_one; the main thread sleeps in poll() waiting
 * for requests, and answers each line on stdin with "pong N" (so a test can
 * see it still serves). It exits at end of input. usage: server */
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
volatile unsigned long sink;
static double cpu_now(void) { struct timespec ts; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); return ts.tv_sec + ts.tv_nsec * 1e-9; }
__attribute__((noinline)) static void spin(double ms) { double end = cpu_now() + ms / 1000; unsigned long x = 1; while (cpu_now() < end) for (int i = 0; i < 20000; i++) x = x * 6364136223846793005UL + 1; sink += x; }
__attribute__((noinline)) void work_two(void) { spin(2.0); sink++; }
__attribute__((noinline)) void work_one(void) { spin(1.0); sink++; }
__attribute__((noinline)) void *busy_thread(void *a) { (void)a; for (;;) { work_two(); work_one(); } return NULL; }
__attribute__((noinline)) int wait_for_request(void) { struct pollfd p = {0, POLLIN, 0}; return poll(&p, 1, 1000); }
int main(void)
{
	pthread_t a;
	pthread_create(&a, NULL, busy_thread, NULL);
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("ready\n");
	char line[256];
	unsigned n = 0;
	for (;;) {
		if (wait_for_request() <= 0)
			continue;
		ssize_t k = read(0, line, sizeof(line));
		if (k <= 0)
			break;
		for (ssize_t i = 0; i < k; i++)
			if (line[i] == '\n')
				printf("pong %u\n", ++n);
	}
	return 0;
}
