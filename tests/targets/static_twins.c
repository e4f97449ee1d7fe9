/* Two static functions named work, one in this file (70 % of the CPU
 * time) and one in static_twins_b.c (30 %), in rounds of 10 ms of process
 * CPU time. Known: two rows "work (static_twins.c)" and
 * "work (static_twins_b.c)", 70/30, and two flamegraph boxes.
 *   static_twins SECONDS */
#include <stdlib.h>
#include <time.h>

double twins_b(double sec);

static double cpu_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static __attribute__((noinline)) double work(double sec)
{
	volatile double x = 0;
	double end = cpu_now() + sec;
	while (cpu_now() < end)
		for (int i = 0; i < 1000; i++)
			x += i * 0.5;
	return x;
}

int main(int argc, char **argv)
{
	double total = argc > 1 ? atof(argv[1]) : 1.0, spent = 0, s = 0;
	while (spent < total) {
		s += work(0.007);
		s += twins_b(0.003);
		spent += 0.010;
	}
	return s < 0;
}
