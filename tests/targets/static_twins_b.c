/* The other static work (see static_twins.c): 30 % of the CPU time. */
#include <time.h>

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
			x += i * 0.25;
	return x;
}

double twins_b(double sec);
__attribute__((noinline)) double twins_b(double sec)
{
	return work(sec);
}
