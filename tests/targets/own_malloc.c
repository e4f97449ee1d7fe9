/* A program that brings its own malloc (it forwards to the C library's, as
 * an allocator linked into a program would stand in for it), for heap
 * attach's one-line notice. Runs until SIGTERM, allocating now and then in
 * own_work through its own malloc.
 * Known: kiln record --heap -p says the program has its own malloc. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
void *malloc(size_t n) { return __libc_malloc(n); }
void free(void *p) { __libc_free(p); }
static volatile sig_atomic_t stop;
static void on_term(int s) { (void)s; stop = 1; }
__attribute__((noinline)) static void own_work(void) { void *p = malloc(100); __asm__ volatile("" : : "r"(p) : "memory"); free(p); }
int main(void)
{
	signal(SIGTERM, on_term);
	printf("ready %d\n", (int)getpid());
	fflush(stdout);
	while (!stop) {
		own_work();
		usleep(1000);
	}
	return 0;
}
