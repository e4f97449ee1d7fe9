/* Threads that fork all the time while another loads a library in a loop.
 *   fork_threads LIB SECONDS: 3 threads fork (the child _exits at once) and
 *   wait, without pause; the main thread dlopens and dlcloses LIB every
 *   millisecond and prints "loads N" every 10 loads. It exits 0 after
 *   SECONDS, or 3 if a dlopen took longer than 20 s (the loader's lock left
 *   held) -- the harness kills it if a dlopen never returns.
 * Known facts: the loads go on at the same pace whatever attaches. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static volatile int stop;
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static void *forker(void *a) {
    (void)a;
    while (!stop) {
        void *p = malloc(100); /* the arenas busy too */
        pid_t c = fork();
        if (c == 0) _exit(0);
        if (c > 0) waitpid(c, NULL, 0);
        free(p);
    }
    return NULL;
}
int main(int argc, char **argv) {
    if (argc < 3) return 2;
    double end = now() + atof(argv[2]);
    pthread_t t[3];
    for (int i = 0; i < 3; i++) pthread_create(&t[i], NULL, forker, NULL);
    long loads = 0;
    int rc = 0;
    while (now() < end) {
        double s = now();
        void *h = dlopen(argv[1], RTLD_NOW);
        if (!h) { fprintf(stderr, "dlopen: %s\n", dlerror()); rc = 1; break; }
        dlclose(h);
        if (now() - s > 20) { fprintf(stderr, "a dlopen took %.1f s\n", now() - s); rc = 3; break; }
        if (++loads % 10 == 0) { printf("loads %ld\n", loads); fflush(stdout); }
        usleep(1000);
    }
    stop = 1;
    for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
    printf("fork_threads done %ld\n", loads);
    return rc;
}
