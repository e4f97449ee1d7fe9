/* Three processes with known heap and CPU facts:
 *   parent:  parent_leak keeps 10 x 5000 B; parent_spin 0.3 s CPU
 *   child 1: child_leak keeps 100 x 1000 B; child_spin 0.4 s CPU
 *   child 2: execs argv[1] (the leaky target: 9,609,216 B in 1056 blocks)
 * usage: fork_exec /path/to/leaky */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
void *keep[256]; int nkeep;
volatile unsigned long sink;
#define ESCAPE(p) __asm__ volatile("" : : "r"(p) : "memory")
static double cpu_now(void) { struct timespec ts; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); return ts.tv_sec + ts.tv_nsec * 1e-9; }
__attribute__((noinline)) static void burn(double secs)
{
	double end = cpu_now() + secs; unsigned long x = 1;
	while (cpu_now() < end) for (int i = 0; i < 100000; i++) x = x * 6364136223846793005UL + 13;
	sink = x;
}
__attribute__((noinline)) void parent_leak(void) { for (int i = 0; i < 10; i++) { keep[nkeep] = malloc(5000); ESCAPE(keep[nkeep]); nkeep++; } }
__attribute__((noinline)) void parent_spin(void) { burn(0.3); sink++; }
__attribute__((noinline)) void child_leak(void) { for (int i = 0; i < 100; i++) { keep[nkeep] = malloc(1000); ESCAPE(keep[nkeep]); nkeep++; } }
__attribute__((noinline)) void child_spin(void) { burn(0.4); sink++; }
int main(int argc, char **argv)
{
	if (argc < 2) return 2;
	parent_leak();
	fflush(stdout);
	pid_t a = fork();
	if (a == 0) { child_leak(); child_spin(); _exit(0); }
	pid_t b = fork();
	if (b == 0) { execl(argv[1], argv[1], (char *)NULL); _exit(127); }
	parent_spin();
	int st;
	waitpid(a, &st, 0);
	waitpid(b, &st, 0);
	printf("fork_exec done %d %d\n", a, b);
	return 0;
}
