/* A library that kiln's dlopen test loads, uses and closes during a run. */
#include <time.h>
volatile unsigned long dl_sink;
static double cpu_now(void) { struct timespec ts; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); return ts.tv_sec + ts.tv_nsec * 1e-9; }
__attribute__((noinline)) void dl_spin(double secs)
{
	double end = cpu_now() + secs;
	unsigned long x = 3;
	while (cpu_now() < end)
		for (int i = 0; i < 100000; i++) x = x * 6364136223846793005UL + 1;
	dl_sink = x;
}
