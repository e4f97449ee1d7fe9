/* A three-level chain of inlined functions around a real one.
 *   main -> level1 -> level2 -> level3 (each inlined into its caller) -> leaf
 * leaf() spins SEC seconds of CPU (default 1).
 * Known facts: every CPU stack in leaf reads main;level1;level2;level3;leaf. */
#include <stdlib.h>
#include <time.h>
static double cpu_now(void) { struct timespec t; clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t); return t.tv_sec + t.tv_nsec / 1e9; }
volatile unsigned long sink;
__attribute__((noinline)) void leaf(double sec) {
    double end = cpu_now() + sec; unsigned long x = 1;
    while (cpu_now() < end) for (int i = 0; i < 10000; i++) x = x * 6364136223846793005UL + 1;
    sink = x;
}
static inline __attribute__((always_inline)) void level3(double s) { leaf(s); sink++; }
static inline __attribute__((always_inline)) void level2(double s) { level3(s); sink++; }
static inline __attribute__((always_inline)) void level1(double s) { level2(s); sink++; }
int main(int argc, char **argv) { level1(argc > 1 ? atof(argv[1]) : 1); return 0; }
