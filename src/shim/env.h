/* The program sees the environment it was given: what kiln adds to start
 * the shim (LD_PRELOAD's entry for it, KILN_FD, KILN_SOCK, KILN_CTL,
 * KILN_RECORDER_PID, KILN_NO_FOLLOW, KILN_PYDOMAINS, KILN_HEAP_SAMPLE) is kept
 * here and taken
 * out of `environ` before the program's main, without allocating (a
 * program that copies its environment, as git and python do, allocates
 * what it would without kiln). The exec family and posix_spawn get it back
 * in the environment they pass on, so exec'd programs and children are
 * still followed; system() and popen(), whose exec glibc makes internally,
 * see it back in `environ` for the length of the call.
 * /proc/PID/environ, the block the kernel keeps from exec, still holds it. */
#ifndef KILN_SHIM_ENV_H
#define KILN_SHIM_ENV_H

#include <stdbool.h>
#include <stddef.h>

/* Keep kiln's variables and take them out of environ. self: the shim's own
 * path, as LD_PRELOAD names it. follow: whether exec'd programs get them
 * back (false with --no-follow). */
void shim_env__hide(const char *self, bool follow);
/* envp with kiln's variables added for an exec (out: room for max
 * pointers, pre: room for an LD_PRELOAD entry of prelen bytes); envp itself
 * when nothing is to be added or there is no room (then the exec'd program
 * is reported as untracked, as before). */
char *const *shim_env__for_exec(char *const envp[], char **out, size_t max, char *pre, size_t prelen);
/* Put kiln's variables back in environ around a call that execs with it
 * (system, popen), and take them out again. */
void shim_env__show(void);
void shim_env__unshow(void);
/* How many pointers shim_env__for_exec needs for envp. */
size_t shim_env__need(char *const envp[]);

#endif
