/* A program that closes every descriptor it inherited, as daemons do at
 * their start (closefrom(3)), then opens sockets of its own that take the
 * freed numbers, and goes on allocating, from a new thread too.
 *   fd_closer         closes at once
 *   fd_closer wait    waits for SIGUSR1 first (an attached kiln), then closes
 *   fd_closer late    a thread allocates before the close too (with time
 *                     stamps, kiln's image page exists then: its descriptor
 *                     is closed and its number taken by the program's own)
 * Known facts: keep_before leaks 1,000 B in 1 block (made before the close),
 * keep_main 1,000 B in 100 blocks, keep_thread 1,000 B in 10 blocks (after
 * it); churn makes 1,000 temporaries of 100 B (2,000 with late). No byte
 * reaches the sockets the program made, and a child it forks finds them all
 * open: it checks, and exits 1 (saying what it found) if not. Prints
 * "fd_closer ok" and exits 0 otherwise. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#define ESCAPE(p) __asm__ volatile("" : : "r"(p) : "memory")
#define NPAIRS 24

static volatile sig_atomic_t go;
static void on_usr1(int s) { (void)s; go = 1; }

__attribute__((noinline)) static void *keep_before(void) { void *p = malloc(1000); ESCAPE(p); return p; }
__attribute__((noinline)) static void keep_main(void)
{
	for (int i = 0; i < 100; i++) {
		void *p = malloc(10);
		ESCAPE(p);
	}
}
__attribute__((noinline)) static void churn(void)
{
	for (int i = 0; i < 1000; i++) {
		void *p = malloc(100);
		ESCAPE(p);
		free(p);
	}
}
__attribute__((noinline)) static void keep_thread(void)
{
	for (int i = 0; i < 10; i++) {
		void *p = malloc(100);
		ESCAPE(p);
	}
}
static void *thread_main(void *a)
{
	(void)a;
	churn();
	keep_thread();
	return NULL;
}

int main(int argc, char **argv)
{
	void *before = keep_before();
	ESCAPE(before);
	if (argc > 1 && !strcmp(argv[1], "wait")) {
		signal(SIGUSR1, on_usr1);
		fprintf(stderr, "fd_closer waiting\n");
		while (!go)
			pause();
	}
	if (argc > 1 && !strcmp(argv[1], "late")) {
		pthread_t t0;
		if (pthread_create(&t0, NULL, (void *(*)(void *))churn, NULL) != 0)
			return 2;
		pthread_join(t0, NULL);
	}
	closefrom(3);
	/* sockets of its own, on the numbers just freed (a channel's among them) */
	int sv[NPAIRS][2];
	for (int i = 0; i < NPAIRS; i++)
		if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv[i]) < 0)
			return 2;
	keep_main();
	pthread_t t;
	if (pthread_create(&t, NULL, thread_main, NULL) != 0)
		return 2;
	pthread_join(t, NULL);
	for (int i = 0; i < NPAIRS; i++)
		for (int k = 0; k < 2; k++) {
			char b[256];
			ssize_t n = recv(sv[i][k], b, sizeof(b), MSG_DONTWAIT);
			if (n >= 0 || errno != EAGAIN) {
				fprintf(stderr, "fd_closer: %zd bytes on its own socket %d\n", n, sv[i][k]);
				return 1;
			}
		}
	/* a child (kiln's fork handlers run in it) finds every socket open */
	pid_t c = fork();
	if (c == 0) {
		for (int i = 0; i < NPAIRS; i++)
			for (int k = 0; k < 2; k++)
				if (fcntl(sv[i][k], F_GETFD) < 0)
					_exit(4);
		_exit(0);
	}
	int st;
	if (c < 0 || waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "fd_closer: a forked child found one of its sockets closed\n");
		return 1;
	}
	char ok[] = "fd_closer ok\n";
	if (write(1, ok, sizeof(ok) - 1) < 0)
		return 2;
	return 0;
}
