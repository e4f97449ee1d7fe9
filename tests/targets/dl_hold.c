/* dlopen LIB, print "loaded", then spin SEC seconds of CPU in its dl_spin:
 * a process whose mapped library can be swapped on disk under a profiler.
 * usage: dl_hold /path/to/libdl_lib.so SEC */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv)
{
	if (argc < 3) return 2;
	void *h = dlopen(argv[1], RTLD_NOW);
	if (!h) { fprintf(stderr, "%s\n", dlerror()); return 1; }
	void (*spin)(double) = (void (*)(double))dlsym(h, "dl_spin");
	printf("loaded\n"); fflush(stdout);
	spin(atof(argv[2]));
	return 0;
}
