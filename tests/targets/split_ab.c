/* Two functions with a chosen CPU split: each round alpha spins A ms and
 * beta spins B ms of thread CPU time. usage: split_ab A B [seconds] */
#include <stdlib.h>
#include <time.h>
volatile unsigned long sink;
static double cpu_now(void) { struct timespec ts; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); return ts.tv_sec + ts.tv_nsec * 1e-9; }
__attribute__((noinline)) static void spin(double ms) { double end = cpu_now() + ms / 1000; unsigned long x = 1; while (cpu_now() < end) for (int i = 0; i < 20000; i++) x = x * 6364136223846793005UL + 1; sink += x; }
__attribute__((noinline)) void alpha(double ms) { spin(ms); sink++; }
__attribute__((noinline)) void beta(double ms) { spin(ms); sink++; }
int main(int argc, char **argv)
{
	if (argc < 3) return 2;
	double a = atof(argv[1]), b = atof(argv[2]), secs = argc > 3 ? atof(argv[3]) : 1;
	double end = cpu_now() + secs;
	while (cpu_now() < end) { alpha(a); beta(b); }
	return 0;
}
