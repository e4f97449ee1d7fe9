/* Creates and joins short threads at a high rate for SECONDS (default 3). */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
volatile unsigned long sink;
static void *short_life(void *a) { unsigned long x = (unsigned long)a; for (int i = 0; i < 20000; i++) x = x * 31 + 7; sink += x; return NULL; }
int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 3;
	struct timespec t0, t; clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		pthread_t th[8];
		for (int i = 0; i < 8; i++) pthread_create(&th[i], NULL, short_life, (void *)(long)i);
		for (int i = 0; i < 8; i++) pthread_join(th[i], NULL);
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) * 1e-9 < secs);
	return 0;
}
