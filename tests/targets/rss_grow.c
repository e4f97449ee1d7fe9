/* Memory that grows, is freed, and grows again, every byte touched (so the
 * resident set follows the heap).
 *   grow_a: 32 MiB, written, held 300 ms, freed
 *   grow_b: 48 MiB, written, held 300 ms, freed
 * Known facts: the heap's peak is grow_b's 48 MiB (50,331,648 B) and the
 * blocks before it (none live at the peak but stdio's buffer); RSS rises
 * past 48 MiB while grow_b holds its block and falls after. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#define MiB (1024L * 1024)
#define ESCAPE(p) __asm__ volatile("" : : "r"(p) : "memory")
__attribute__((noinline)) static void grow_a(void) { char *p = malloc(32 * MiB); memset(p, 1, 32 * MiB); ESCAPE(p); usleep(300000); free(p); }
__attribute__((noinline)) static void grow_b(void) { char *p = malloc(48 * MiB); memset(p, 2, 48 * MiB); ESCAPE(p); usleep(300000); free(p); }
int main(void)
{
	grow_a();
	usleep(40000);
	grow_b();
	printf("rss_grow done\n");
	return 0;
}
