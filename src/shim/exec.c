/* The exec family, posix_spawn, system and popen (the shim's hooks): kiln's
 * variables passed on to the program exec'd (shim/env.h), and a process
 * that will not carry the shim said before the exec. */
#include <alloca.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "kiln/kiln.h"
#include "kiln/ring.h"
#include "shim/env.h"
#include "shim/shim_int.h"

/* ---- exec: say when the next image will not carry the shim ----
 * The recorder also checks each exec from /proc, but a program that ends at
 * once leaves nothing there; here, before the exec, it is certain. */
extern char **environ;

static bool env_has_shim(char *const envp[])
{
	for (size_t i = 0; envp && envp[i]; i++)
		if (!strncmp(envp[i], "LD_PRELOAD=", 11) && strstr(envp[i], "libkiln_shim"))
			return true;
	return false;
}

/* 1 when path is an ELF file without a program interpreter (the recorder's
 * collect/preload.c tells the same from /proc; the shim links no kiln code). */
static int file_is_static(const char *path)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ElfW(Ehdr) eh;
	int rc = 0;
	if (pread(fd, &eh, sizeof(eh), 0) == (ssize_t)sizeof(eh) && !memcmp(eh.e_ident, ELFMAG, SELFMAG) &&
	    eh.e_phentsize == sizeof(ElfW(Phdr)) && eh.e_phnum < 4096) {
		rc = 1;
		for (unsigned i = 0; i < eh.e_phnum && rc; i++) {
			ElfW(Phdr) ph;
			if (pread(fd, &ph, sizeof(ph), (off_t)(eh.e_phoff + i * sizeof(ph))) != (ssize_t)sizeof(ph) ||
			    ph.p_type == PT_INTERP)
				rc = 0;
		}
	}
	close(fd);
	return rc;
}

static void exec_check(const char *path, char *const envp[])
{
	if (g_state <= 0 || t_guard || g_nofollow)
		return;
	t_guard++;
	if (path && strchr(path, '/') && file_is_static(path))
		channel_send(KILN_MSG_LOSS, HL_STATIC, 1, -1);
	else if (!env_has_shim(envp))
		channel_send(KILN_MSG_LOSS, HL_ENV_CLEARED, 1, -1);
	t_guard--;
}

/* The exec family passes kiln's variables on (shim/env.h): envp with them
 * added, in room on the stack (a vfork child may be the caller: nothing is
 * allocated). An environment too large for it goes as it is. */
#define EXEC_ENV_MAX 4096
#define WITH_KILN_ENV(envp, e)                                                                         \
	size_t need_ = shim_env__need(envp);                                                           \
	char **arr_ = alloca((need_ <= EXEC_ENV_MAX ? need_ : 1) * sizeof(char *));                    \
	char pre_[8192 + 16];                                                                          \
	char *const *e = need_ <= EXEC_ENV_MAX ? shim_env__for_exec(envp, arr_, need_, pre_, sizeof(pre_)) \
					       : (envp)

EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	WITH_KILN_ENV(envp, e);
	exec_check(path, e);
	if (!real_execve)
		resolve_real();
	return real_execve(path, argv, e);
}

EXPORT int execv(const char *path, char *const argv[])
{
	return execve(path, argv, environ);
}

EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	WITH_KILN_ENV(envp, e);
	exec_check(file, e);
	if (!real_execvpe)
		resolve_real();
	return real_execvpe(file, argv, e);
}

EXPORT int execvp(const char *file, char *const argv[])
{
	return execvpe(file, argv, environ);
}

/* execl, execle, execlp: glibc makes their exec internally, out of reach of
 * the hooks above; their arguments as an array (on the stack) go through
 * them instead. */
#define EXECL_MAX 8192
#define COLLECT_ARGS(arg0, ap, argv, n)                       \
	size_t n = 1;                                         \
	va_start(ap, arg0);                                   \
	while (va_arg(ap, const char *) && n < EXECL_MAX)      \
		n++;                                          \
	va_end(ap);                                           \
	if (n >= EXECL_MAX) {                                 \
		errno = E2BIG;                                \
		return -1;                                    \
	}                                                     \
	char **argv = alloca((n + 1) * sizeof(char *));       \
	argv[0] = (char *)(arg0);                             \
	va_start(ap, arg0);                                   \
	for (size_t i_ = 1; i_ <= n; i_++)                     \
		argv[i_] = va_arg(ap, char *);                \
	argv[n] = NULL

EXPORT int execl(const char *path, const char *arg, ...)
{
	va_list ap;
	COLLECT_ARGS(arg, ap, argv, n);
	va_end(ap);
	return execve(path, argv, environ);
}

EXPORT int execlp(const char *file, const char *arg, ...)
{
	va_list ap;
	COLLECT_ARGS(arg, ap, argv, n);
	va_end(ap);
	return execvpe(file, argv, environ);
}

EXPORT int execle(const char *path, const char *arg, ...)
{
	va_list ap;
	COLLECT_ARGS(arg, ap, argv, n);
	char *const *envp = va_arg(ap, char *const *); /* after the NULL */
	va_end(ap);
	return execve(path, argv, envp);
}

EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
		       const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	WITH_KILN_ENV(envp, e);
	exec_check(path, e);
	if (!real_posix_spawn)
		resolve_real();
	return real_posix_spawn(pid, path, fa, attr, argv, e);
}

EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
			const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	WITH_KILN_ENV(envp, e);
	exec_check(file, e);
	if (!real_posix_spawnp)
		resolve_real();
	return real_posix_spawnp(pid, file, fa, attr, argv, e);
}

/* system and popen exec with environ, inside glibc: kiln's variables are
 * back in it for the length of the call (errno as the call left it). */
static void env_for_call(bool on)
{
	int e = errno;
	t_guard++;
	if (on)
		shim_env__show();
	else
		shim_env__unshow();
	t_guard--;
	errno = e;
}

EXPORT int system(const char *cmd)
{
	if (!real_system)
		resolve_real();
	env_for_call(true);
	int rc = real_system(cmd);
	env_for_call(false);
	return rc;
}

EXPORT FILE *popen(const char *cmd, const char *mode)
{
	if (!real_popen)
		resolve_real();
	env_for_call(true);
	FILE *f = real_popen(cmd, mode);
	env_for_call(false);
	return f;
}

