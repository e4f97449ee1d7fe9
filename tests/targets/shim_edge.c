/* The shim's edge cases, each checked by the program itself (it exits 1 on
 * any difference from plain libc) and with known heap facts for kiln:
 *   edge_realloc:      realloc(NULL,100) then realloc(p,0)       -> leaks 0
 *   edge_reallocarray: reallocarray(NULL,10,10); overflow fails  -> leaks 100 B
 *   edge_valloc:       valloc(100) + pvalloc(100)                -> leaks 200 B, 2 blocks
 *   edge_fail:         malloc/calloc that must fail, errno ENOMEM -> leaks 0, 0 calls
 *   edge_signal:       a SIGUSR1 handler keeps malloc(64)        -> leaks 64 B
 *   edge_tls:          a TLS destructor frees a block and keeps malloc(48) -> leaks 48 B
 *   edge_fork:         a child frees the parent's block and exits; vfork+exec, posix_spawn
 * usage: shim_edge */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#define ESCAPE(p) __asm__ volatile("" : : "r"(p) : "memory")
#define CHECK(c) do { if (!(c)) { fprintf(stderr, "shim_edge: %s:%d: %s\n", __FILE__, __LINE__, #c); exit(1); } } while (0)
extern char **environ;
void *volatile kept[16];

__attribute__((noinline)) void edge_realloc(void)
{
	char *p = realloc(NULL, 100);
	CHECK(p);
	memset(p, 1, 100);
	errno = 0;
	void *q = realloc(p, 0); /* glibc: frees, returns NULL */
	CHECK(q == NULL);
}
__attribute__((noinline)) void edge_reallocarray(void)
{
	kept[0] = reallocarray(NULL, 10, 10);
	CHECK(kept[0]);
	errno = 0;
	void *bad = reallocarray(NULL, SIZE_MAX / 2, 4);
	CHECK(bad == NULL && errno == ENOMEM);
}
__attribute__((noinline)) void edge_valloc(void)
{
	kept[1] = valloc(100);
	kept[2] = pvalloc(100);
	CHECK(kept[1] && kept[2] && ((uintptr_t)kept[1] & 4095) == 0);
}
__attribute__((noinline)) void edge_fail(void)
{
	errno = 0;
	void *a = malloc(SIZE_MAX - 4096);
	CHECK(a == NULL && errno == ENOMEM);
	errno = 0;
	void *b = calloc(SIZE_MAX / 2, 4);
	CHECK(b == NULL && errno == ENOMEM);
	void *c;
	CHECK(posix_memalign(&c, 3, 16) == EINVAL); /* not a power of two */
	/* a successful call leaves errno alone */
	errno = 1234;
	void *d = malloc(10);
	ESCAPE(d);
	free(d);
	CHECK(errno == 1234);
}
static void on_usr1(int sig)
{
	(void)sig;
	kept[3] = malloc(64);
}
__attribute__((noinline)) void edge_signal(void)
{
	signal(SIGUSR1, on_usr1);
	raise(SIGUSR1);
	CHECK(kept[3]);
}
static pthread_key_t key;
static void tls_dtor(void *v)
{
	free(v);
	kept[4] = malloc(48);
}
static void *tls_thread(void *a)
{
	pthread_setspecific(key, malloc(500));
	return a;
}
__attribute__((noinline)) void edge_tls(void)
{
	pthread_key_create(&key, tls_dtor);
	pthread_t t;
	pthread_create(&t, NULL, tls_thread, NULL);
	pthread_join(t, NULL);
	CHECK(kept[4]);
}
__attribute__((noinline)) void edge_fork(void)
{
	void *parents = malloc(777);
	ESCAPE(parents);
	pid_t c = fork();
	if (c == 0) {
		free(parents); /* not the child's own: no effect on its numbers */
		_exit(0);
	}
	int st;
	waitpid(c, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	free(parents);
	pid_t v = vfork();
	if (v == 0) {
		execl("/bin/true", "true", (char *)NULL);
		_exit(127);
	}
	waitpid(v, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	pid_t sp;
	char *argv[] = {"true", NULL};
	CHECK(posix_spawn(&sp, "/bin/true", NULL, NULL, argv, environ) == 0);
	waitpid(sp, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}
int main(void)
{
	edge_realloc();
	edge_reallocarray();
	edge_valloc();
	edge_fail();
	edge_signal();
	edge_tls();
	edge_fork();
	printf("shim_edge done\n");
	return 0;
}
