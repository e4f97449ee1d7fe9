/* For heap snapshots: keep_first keeps 100 x 10,000 B; then it waits for
 * DIR/go1; frees 50 of them and keep_second keeps 300 x 10,000 B; waits for
 * DIR/go2, and exits. It writes DIR/ready1 and DIR/ready2 when waiting.
 * usage: snap_prog DIR [live_blocks]   (live_blocks: extra 16 B blocks kept) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
void *first[100], *second[300], **extra;
#define ESCAPE(p) __asm__ volatile("" : : "r"(p) : "memory")
__attribute__((noinline)) void keep_first(void) { for (int i = 0; i < 100; i++) { first[i] = malloc(10000); ESCAPE(first[i]); } }
__attribute__((noinline)) void keep_second(void) { for (int i = 0; i < 300; i++) { second[i] = malloc(10000); ESCAPE(second[i]); } }
__attribute__((noinline)) void keep_many(long n) { extra = malloc(n * sizeof(void *)); for (long i = 0; i < n; i++) { extra[i] = malloc(16); ESCAPE(extra[i]); } }
static void mark(const char *dir, const char *name) { char p[4096]; snprintf(p, sizeof(p), "%s/%s", dir, name); FILE *f = fopen(p, "w"); if (f) fclose(f); }
static void await(const char *dir, const char *name) { char p[4096]; snprintf(p, sizeof(p), "%s/%s", dir, name); while (access(p, F_OK) != 0) usleep(10000); }
int main(int argc, char **argv)
{
	if (argc < 2) return 2;
	if (argc > 2) keep_many(atol(argv[2]));
	keep_first();
	mark(argv[1], "ready1");
	await(argv[1], "go1");
	for (int i = 0; i < 50; i++) free(first[i]);
	keep_second();
	mark(argv[1], "ready2");
	await(argv[1], "go2");
	return 0;
}
