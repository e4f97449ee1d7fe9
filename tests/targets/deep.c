/* Recursion 20,000 frames deep, spinning at the bottom: stacks too deep to
 * unwind must end in a marker frame, never crash or slow down.
 * usage: deep [depth] [seconds] */
#include <stdlib.h>
#include <time.h>
volatile unsigned long sink;
static double cpu_now(void) { struct timespec ts; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); return ts.tv_sec + ts.tv_nsec * 1e-9; }
__attribute__((noinline)) void dive(int d, double secs)
{
	if (d == 0) { double end = cpu_now() + secs; unsigned long x = 1; while (cpu_now() < end) for (int i = 0; i < 10000; i++) x = x * 3 + 1; sink = x; return; }
	dive(d - 1, secs);
	sink++;
}
int main(int argc, char **argv) { dive(argc > 1 ? atoi(argv[1]) : 20000, argc > 2 ? atof(argv[2]) : 0.5); return 0; }
