/* Leaks 50 x 2048 B in leak_then_die, then kills itself with SIGKILL:
 * kiln must still count the leak exactly and exit 137. */
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>
void *keep[64];
#define ESCAPE(p) __asm__ volatile("" : : "r"(p) : "memory")
__attribute__((noinline)) void leak_then_die(void)
{
	for (int i = 0; i < 50; i++) { keep[i] = malloc(2048); ESCAPE(keep[i]); }
	for (int i = 0; i < 1000; i++) free(malloc(100));
}
int main(void)
{
	leak_then_die();
	kill(getpid(), SIGKILL);
	pause();
	return 0;
}
