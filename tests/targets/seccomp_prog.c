/* A program under a seccomp filter that kills it on socketpair (as a
 * sandboxed service's might), working in a loop.
 *   seccomp_prog SECONDS: installs the filter, prints "filtered", allocates
 *   and frees in a loop for SECONDS, prints "seccomp_prog done", exits 0.
 * Known facts: a heap attach (it would call socketpair in the program) is
 * refused and the program runs on; CPU sampling works. */
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(int argc, char **argv) {
    double end = now() + (argc > 1 ? atof(argv[1]) : 5);
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_socketpair, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof(f) / sizeof(f[0]), f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) { perror("seccomp"); return 1; }
    printf("filtered\n"); fflush(stdout);
    volatile double x = 0;
    while (now() < end) { void *p = malloc(64); free(p); for (int i = 0; i < 10000; i++) x += i; }
    printf("seccomp_prog done\n");
    return 0;
}
