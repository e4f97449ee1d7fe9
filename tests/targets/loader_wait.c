/* A program whose main thread waits in read() (a system call that restarts
 * by being run again) while another thread holds the dynamic linker's lock
 * inside dl_iterate_phdr for HOLD seconds: a heap attach's dlopen in main
 * waits on that lock, long enough to kill kiln in the middle of the call.
 *   usage: loader_wait HOLD FIFO [catch]
 * Prints "holding" once the lock is held, "released" as it lets it go. When a line comes on FIFO, main
 * makes 100 blocks of 1000 B, frees 60 (40 leak: 40,000 B), prints
 * "got LINE" and exits 0. "catch": a handler (which counts) for every
 * signal but the faults, SIGKILL and SIGSTOP: no signal is ignored, so an
 * attach's calls cannot end on one and return the old way. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#define ESCAPE(p) __asm__ volatile("" : : "r"(p) : "memory")
static double hold;
static volatile sig_atomic_t caught;
static void count(int sig) { (void)sig; caught++; }
static int held(struct dl_phdr_info *i, size_t n, void *arg)
{
	(void)i; (void)n; (void)arg;
	printf("holding\n"); fflush(stdout);
	usleep((useconds_t)(hold * 1e6));
	printf("released\n"); fflush(stdout);
	return 1; /* the first module is enough */
}
static void *holder(void *arg) { (void)arg; dl_iterate_phdr(held, NULL); return NULL; }
__attribute__((noinline)) static void *make(size_t n) { void *p = malloc(n); ESCAPE(p); return p; }
int main(int argc, char **argv)
{
	if (argc < 3) return 2;
	hold = atof(argv[1]);
	if (argc > 3 && !strcmp(argv[3], "catch")) {
		for (int sig = 1; sig < 65; sig++)
			if (sig != SIGSEGV && sig != SIGBUS && sig != SIGFPE && sig != SIGILL && sig != SIGTRAP &&
			    sig != SIGSYS && sig != SIGKILL && sig != SIGSTOP)
				signal(sig, count);
	}
	int fd = open(argv[2], O_RDWR); /* RDWR: the open does not wait for a writer */
	if (fd < 0) { perror("open"); return 1; }
	pthread_t t;
	pthread_create(&t, NULL, holder, NULL);
	char line[256];
	ssize_t k = read(fd, line, sizeof(line) - 1);
	if (k <= 0) { perror("read"); return 1; }
	line[k] = 0;
	line[strcspn(line, "\n")] = 0;
	void *keep[100];
	for (int i = 0; i < 100; i++) keep[i] = make(1000);
	for (int i = 0; i < 60; i++) free(keep[i]);
	pthread_join(t, NULL);
	printf("got %s (%d caught)\n", line, (int)caught);
	return 0;
}
