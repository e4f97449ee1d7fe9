/* Whether a process image that kiln follows can carry the heap shim, told
 * from what the kernel says of it (never guessed from silence): a statically
 * linked program has nothing to preload into, a setuid/setgid exec (AT_SECURE)
 * makes the loader ignore LD_PRELOAD, and a program may exec another with
 * kiln's LD_PRELOAD removed from the environment. */
#ifndef KILN_COLLECT_PRELOAD_H
#define KILN_COLLECT_PRELOAD_H

#include <stdint.h>

/* An enum kiln_heap_loss process cause, or -1 when the shim can be there
 * (or the process is gone and nothing can be told), or PRELOAD_NOT_YET when
 * its environment is still empty: read inside execve, after the new memory
 * is in place and before the kernel has written the environment into it
 * (the exec event comes first); ask again a little later. */
#define PRELOAD_NOT_YET (-2)
int preload__untracked(uint32_t pid);
/* The same told from a program file about to be exec'd (a process that ends
 * before kiln looks at it leaves nothing in /proc): static, or setuid/setgid
 * to another user; -1 otherwise. */
int preload__untracked_file(const char *path);

#endif
