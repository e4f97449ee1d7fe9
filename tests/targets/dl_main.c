/* dlopen LIB, spin 0.6 s CPU in its dl_spin, dlclose it, then spin 0.3 s in
 * after_close; a second library mapping may reuse the address range.
 * usage: dl_main /path/to/libdl_lib.so */
#include <dlfcn.h>
#include <stdio.h>
#include <time.h>
volatile unsigned long sink;
static double cpu_now(void) { struct timespec ts; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); return ts.tv_sec + ts.tv_nsec * 1e-9; }
__attribute__((noinline)) void after_close(double secs)
{
	double end = cpu_now() + secs;
	unsigned long x = 5;
	while (cpu_now() < end)
		for (int i = 0; i < 100000; i++) x = x * 2862933555777941757UL + 3;
	sink = x;
}
int main(int argc, char **argv)
{
	if (argc < 2) return 2;
	void *h = dlopen(argv[1], RTLD_NOW);
	if (!h) { fprintf(stderr, "%s\n", dlerror()); return 1; }
	void (*spin)(double) = (void (*)(double))dlsym(h, "dl_spin");
	spin(0.6);
	dlclose(h);
	after_close(0.3);
	printf("dl_main done\n");
	return 0;
}
