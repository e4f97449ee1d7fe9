/* JIT-style code: a loop copied into anonymous executable memory and named
 * in /tmp/perf-PID.map, as node --perf-basic-prof and python -X perf do.
 * usage: jit [seconds] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
static const unsigned char code[] = {
	0xb9, 0x00, 0x00, 0x10, 0x00, /* mov ecx, 0x100000 */
	0xff, 0xc9,                   /* loop: dec ecx */
	0x75, 0xfc,                   /* jnz loop */
	0xc3,                         /* ret */
};
static double now(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return ts.tv_sec + ts.tv_nsec * 1e-9; }
int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 1.0;
	unsigned char *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) return 1;
	memcpy(m, code, sizeof(code));
	char path[64];
	snprintf(path, sizeof(path), "/tmp/perf-%d.map", (int)getpid());
	FILE *f = fopen(path, "w");
	if (!f) return 1;
	fprintf(f, "%lx %zx jit_hot_loop\n", (unsigned long)m, sizeof(code));
	fclose(f);
	void (*fn)(void) = (void (*)(void))m;
	double end = now() + secs;
	while (now() < end) fn();
	return 0;
}
