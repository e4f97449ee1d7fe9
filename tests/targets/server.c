/* A two-thread server for attach tests: busy_thread splits its CPU 2:1
 * between work_two and work_one; sleeper sleeps in nanosleep. It answers
 * each line on stdin with "pong N" (so a test can see it still serves) and
 * exits at end of input. usage: server */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
volatile unsigned long sink;
static double cpu_now(void) { struct timespec ts; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); return ts.tv_sec + ts.tv_nsec * 1e-9; }
__attribute__((noinline)) static void spin(double ms) { double end = cpu_now() + ms / 1000; unsigned long x = 1; while (cpu_now() < end) for (int i = 0; i < 20000; i++) x = x * 6364136223846793005UL + 1; sink += x; }
__attribute__((noinline)) void work_two(void) { spin(2.0); sink++; }
__attribute__((noinline)) void work_one(void) { spin(1.0); sink++; }
__attribute__((noinline)) void *busy_thread(void *a) { (void)a; for (;;) { work_two(); work_one(); } return NULL; }
__attribute__((noinline)) void sleep_forever(void) { for (;;) { struct timespec ts = {0, 50000000}; nanosleep(&ts, NULL); } }
__attribute__((noinline)) void *sleeper(void *a) { (void)a; sleep_forever(); return NULL; }
int main(void)
{
	pthread_t a, b;
	pthread_create(&a, NULL, busy_thread, NULL);
	pthread_create(&b, NULL, sleeper, NULL);
	char line[256]; unsigned n = 0;
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("ready\n");
	while (fgets(line, sizeof(line), stdin)) printf("pong %u\n", ++n);
	return 0;
}
