/* The evaluation loop of the programs posing as CPython (python_fake,
 * python_loops): a "_PyEval_EvalFrameDefault" that burns SEC seconds of
 * the process's CPU time, where kiln's samples land. */
#ifndef KILN_TARGETS_FAKE_EVAL_H
#define KILN_TARGETS_FAKE_EVAL_H
#include <time.h>

static double cpu_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (double)t.tv_sec + t.tv_nsec / 1e9;
}

__attribute__((noinline)) double _PyEval_EvalFrameDefault(double sec);
__attribute__((noinline)) double _PyEval_EvalFrameDefault(double sec)
{
	volatile double x = 0;
	double end = cpu_now() + sec;
	while (cpu_now() < end)
		for (int i = 0; i < 1000; i++)
			x += i;
	return x;
}

#endif
