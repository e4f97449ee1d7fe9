/* Four threads that realloc blocks (moving them) while the others allocate:
 * an address freed by one thread's realloc is soon handed to another. Every
 * block is freed, so nothing may leak; 3 allocation calls per round.
 * usage: realloc_race [rounds per thread] */
#include <pthread.h>
#include <stdlib.h>
#define ESCAPE(p) __asm__ volatile("" : : "r"(p) : "memory")
static long rounds = 100000;
__attribute__((noinline)) void *race_worker(void *arg)
{
	for (long i = 0; i < rounds; i++) {
		char *p = malloc(16 + (i & 7));
		ESCAPE(p);
		p = realloc(p, 2048 + (i & 255));
		ESCAPE(p);
		char *q = malloc(16 + (i & 7));
		ESCAPE(q);
		free(p);
		free(q);
	}
	return arg;
}
int main(int argc, char **argv)
{
	if (argc > 1) rounds = atol(argv[1]);
	pthread_t t[4];
	for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, race_worker, NULL);
	for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
	return 0;
}
