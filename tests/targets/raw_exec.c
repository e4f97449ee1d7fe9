/* Execs argv[1] with an empty environment by the system call itself, past
 * every libc wrapper an interposing library could see (as a program with its
 * own syscall layer, Go's runtime for one, does).
 * Known fact: the exec'd program runs without LD_PRELOAD.
 * usage: raw_exec PROGRAM [ARGS...] */
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	char *envp[] = {NULL};
	syscall(SYS_execve, argv[1], argv + 1, envp);
	perror("execve");
	return 127;
}
