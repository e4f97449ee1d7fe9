/* Two threads loading and unloading real libraries in a loop, as plugin
 * hosts do, so that some library is always being relocated by the dynamic
 * linker somewhere.
 *   dl_race SECONDS LIB...: threads 1 and 2 each dlopen (RTLD_NOW) and
 *   dlclose every LIB in turn, without pause; the main thread prints
 *   "rounds N" every 100 ms. Exits 0 after SECONDS, 1 if a dlopen fails.
 * Known facts: the rounds go on at the same pace whatever attaches. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
static volatile int stop;
static volatile long rounds;
static char **libs;
static int nlibs;
static void *loader(void *a) {
    int off = (int)(long)a;
    while (!stop) {
        for (int i = 0; i < nlibs && !stop; i++) {
            void *h = dlopen(libs[(i + off) % nlibs], RTLD_NOW | RTLD_LOCAL);
            if (!h) { fprintf(stderr, "dlopen: %s\n", dlerror()); exit(1); }
            void *p = malloc(64);
            __asm__ volatile("" : : "r"(p) : "memory");
            free(p);
            dlclose(h);
        }
        __atomic_add_fetch(&rounds, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(int argc, char **argv) {
    if (argc < 3) return 2;
    double end = now() + atof(argv[1]);
    libs = argv + 2; nlibs = argc - 2;
    pthread_t t[2];
    for (long i = 0; i < 2; i++) pthread_create(&t[i], NULL, loader, (void *)i);
    while (now() < end) { usleep(100000); printf("rounds %ld\n", rounds); fflush(stdout); }
    stop = 1;
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    printf("dl_race done\n");
    return 0;
}
