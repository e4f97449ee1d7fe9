/* A POSIX timer every 2 ms whose signal carries a pointer (si_value), used
 * by the handler as it came, as such programs do; it allocates meanwhile.
 *   sigval_prog SECONDS: prints "armed", runs SECONDS (or until SIGUSR2),
 *   prints "ticks N", exits 0. A tick that lost its si_value or si_code (a signal sent again
 *   without its siginfo) ends it with status 3 ("lost siginfo").
 * Known facts: exit 0 however often kiln attaches. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
struct counter { long magic, ticks; };
static struct counter ctr = {0x6b696c6e, 0};
static void on_tick(int s, siginfo_t *si, void *uc) {
    (void)s; (void)uc;
    struct counter *c = si->si_value.sival_ptr;
    if (si->si_code != SI_TIMER || c != &ctr || c->magic != 0x6b696c6e) { write(2, "lost siginfo\n", 13); _exit(3); }
    c->ticks++;
}
static volatile sig_atomic_t enough;
static void on_usr2(int s) { (void)s; enough = 1; }
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(int argc, char **argv) {
    double end = now() + (argc > 1 ? atof(argv[1]) : 5);
    struct sigaction sa = {0};
    sa.sa_sigaction = on_tick; sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGRTMIN, &sa, NULL);
    signal(SIGUSR2, on_usr2);
    struct sigevent ev = {0};
    ev.sigev_notify = SIGEV_SIGNAL; ev.sigev_signo = SIGRTMIN; ev.sigev_value.sival_ptr = &ctr;
    timer_t t;
    if (timer_create(CLOCK_MONOTONIC, &ev, &t)) { perror("timer_create"); return 1; }
    struct itimerspec its = {{0, 2000000}, {0, 2000000}};
    timer_settime(t, 0, &its, NULL);
    printf("armed\n"); fflush(stdout);
    while (now() < end && !enough) { void *p = malloc(32); __asm__ volatile("" : : "r"(p) : "memory"); free(p); usleep(100); }
    printf("ticks %ld\n", ctr.ticks);
    return 0;
}
