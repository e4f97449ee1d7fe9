/* Children started every way a program starts one, each told apart by the
 * block it leaks; every process prints the environment it sees.
 *   env_spawn: prints "env N LEN", then starts itself as "child K" through
 *   K=1 system(), 2 popen(), 3 posix_spawn(), 4 posix_spawnp(), 5 fork+execl,
 *   6 fork+execle (with an environment of its own: E=5), 7 fork+execvp.
 *   env_spawn child K: prints "child K env N LEN", leaks 1000*K bytes in
 *   child_leak and exits.
 * Known facts: under a profiler every line is what it is without one, and
 * child_leak holds 1000+2000+...+7000 = 28,000 B in 7 blocks. */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
extern char **environ;
#define ESCAPE(p) __asm__ volatile("" : : "r"(p) : "memory")
static void env_line(char *out, size_t n)
{
	size_t k = 0, len = 0;
	for (char **e = environ; *e; e++) { k++; len += strlen(*e); }
	snprintf(out, n, "env %zu %zu", k, len);
}
__attribute__((noinline)) static void child_leak(int k) { void *p = malloc(1000 * (size_t)k); memset(p, 1, 16); ESCAPE(p); }
int main(int argc, char **argv)
{
	char line[64], self[4096], cmd[4200];
	env_line(line, sizeof(line));
	if (argc > 2 && !strcmp(argv[1], "child")) {
		int k = atoi(argv[2]);
		printf("child %d %s\n", k, line);
		fflush(stdout);
		child_leak(k);
		return 0;
	}
	printf("%s\n", line);
	fflush(stdout);
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0) return 1;
	self[n] = 0;
	snprintf(cmd, sizeof(cmd), "'%s' child 1", self);
	if (system(cmd) != 0) return 1;
	snprintf(cmd, sizeof(cmd), "'%s' child 2", self);
	FILE *f = popen(cmd, "r");
	if (!f) return 1;
	char buf[256];
	while (fgets(buf, sizeof(buf), f)) fputs(buf, stdout);
	pclose(f);
	fflush(stdout);
	pid_t pid;
	char *a3[] = {self, "child", "3", NULL};
	if (posix_spawn(&pid, self, NULL, NULL, a3, environ) != 0) return 1;
	waitpid(pid, NULL, 0);
	char *a4[] = {self, "child", "4", NULL};
	if (posix_spawnp(&pid, self, NULL, NULL, a4, environ) != 0) return 1;
	waitpid(pid, NULL, 0);
	if ((pid = fork()) == 0) { execl(self, self, "child", "5", (char *)NULL); _exit(127); }
	waitpid(pid, NULL, 0);
	char *own_env[] = {"E=5", NULL};
	if ((pid = fork()) == 0) { execle(self, self, "child", "6", (char *)NULL, own_env); _exit(127); }
	waitpid(pid, NULL, 0);
	char *a7[] = {self, "child", "7", NULL};
	if ((pid = fork()) == 0) { execvp(self, a7); _exit(127); }
	waitpid(pid, NULL, 0);
	return 0;
}
