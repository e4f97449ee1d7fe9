/* A program that handles SIGINT and SIGTERM and reports which it got.
 *   sig_child SEC: installs handlers, allocates a 1000-byte block it keeps
 *   in keep_block(), then waits up to SEC seconds; on SIGINT it exits 42,
 *   on SIGTERM 43; when the time runs out, 0. Prints "ready" first. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#define ESCAPE(p) __asm__ volatile("" : : "r"(p) : "memory")
static volatile sig_atomic_t got;
static void on(int s) { got = s; }
static void *kept;
__attribute__((noinline)) static void keep_block(void) { kept = malloc(1000); ESCAPE(kept); }
int main(int argc, char **argv) {
    double sec = argc > 1 ? atof(argv[1]) : 5;
    signal(SIGINT, on); signal(SIGTERM, on);
    keep_block();
    printf("ready\n"); fflush(stdout);
    for (int i = 0; i < (int)(sec * 100) && !got; i++) usleep(10000);
    return got == SIGINT ? 42 : got == SIGTERM ? 43 : 0;
}
