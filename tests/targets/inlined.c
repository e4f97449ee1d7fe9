/* An always_inline function in an -O2 program: kiln must show hot_inline as
 * a frame of its own (with inlined.c and its line) under outer_fn.
 * usage: inlined [seconds] */
#include <stdlib.h>
#include <time.h>
volatile unsigned long sink;
static double cpu_now(void) { struct timespec ts; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); return ts.tv_sec + ts.tv_nsec * 1e-9; }
static inline __attribute__((always_inline)) unsigned long hot_inline(unsigned long x)
{
	for (int i = 0; i < 100000; i++)
		x = x * 6364136223846793005UL + 11; /* HOT_INLINE_LINE */
	return x;
}
__attribute__((noinline)) void outer_fn(double end)
{
	unsigned long x = 1;
	/* the clock is a system call: asked every 16 rounds, so its share (2 %
	 * on a paravirtualized VM when asked every round) stays far below 1 % */
	while (cpu_now() < end)
		for (int k = 0; k < 16; k++)
			x = hot_inline(x);
	sink = x;
}
int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 1.0;
	outer_fn(cpu_now() + secs);
	return 0;
}
