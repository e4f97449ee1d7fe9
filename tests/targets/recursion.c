/* A recursive function: recurse(12) spins at its deepest call for about
 * 1 s of CPU. Its total must be 100% of the samples, never 12x.
 * usage: recursion [seconds] */
#include <stdlib.h>
#include <time.h>
volatile unsigned long sink;
static double cpu_now(void) { struct timespec ts; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); return ts.tv_sec + ts.tv_nsec * 1e-9; }
__attribute__((noinline)) void recurse(int depth, double end)
{
	if (depth == 0) {
		unsigned long x = 1;
		while (cpu_now() < end)
			for (int i = 0; i < 100000; i++) x = x * 6364136223846793005UL + 7;
		sink = x;
		return;
	}
	recurse(depth - 1, end);
	sink++;
}
int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 1.0;
	recurse(12, cpu_now() + secs);
	return 0;
}
