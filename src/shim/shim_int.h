/* What the shim's files share: the process's recording state, the real
 * functions and the channel (all hidden: nothing here is the program's).
 * shim.c: the allocation hooks, rings and stacks; exec.c: the exec family. */
#ifndef KILN_SHIM_INT_H
#define KILN_SHIM_INT_H

#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define EXPORT __attribute__((visibility("default")))
/* The allocation hooks hold no arrays: the canary's load and check, on
 * every malloc and free of the program, buy nothing there. */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#define HOOK EXPORT __attribute__((no_stack_protector))
#else
#define HOOK EXPORT
#endif
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define TLS __thread __attribute__((tls_model("initial-exec")))
#define ARRAY_COUNT(a) (sizeof(a) / sizeof((a)[0]))

typedef void *(*malloc_fn)(size_t);
typedef void *(*calloc_fn)(size_t, size_t);
typedef void *(*realloc_fn)(void *, size_t);
typedef void (*free_fn)(void *);
typedef void (*free_sized_fn)(void *, size_t);
typedef void (*free_aligned_sized_fn)(void *, size_t, size_t);
typedef int (*posix_memalign_fn)(void **, size_t, size_t);
typedef void *(*memalign_fn)(size_t, size_t);
typedef void *(*valloc_fn)(size_t);
typedef int (*execve_fn)(const char *, char *const[], char *const[]);
typedef int (*spawn_fn)(pid_t *, const char *, const posix_spawn_file_actions_t *, const posix_spawnattr_t *,
			char *const[], char *const[]);
typedef int (*system_fn)(const char *);
typedef FILE *(*popen_fn)(const char *, const char *);

extern execve_fn real_execve, real_execvpe;
extern spawn_fn real_posix_spawn, real_posix_spawnp;
extern system_fn real_system;
extern popen_fn real_popen;

extern int g_state;     /* 0 unknown, 1 recording, -1 off */
extern bool g_nofollow; /* --no-follow: children and exec'd programs are not recorded */
/* > 0 while the shim itself runs on this thread: its own calls are not recorded */
extern TLS int t_guard;

/* Look the real functions up (once). */
void resolve_real(void);
/* Send one message to the recorder (ring.h), with a descriptor or -1. */
bool channel_send(uint16_t type, uint64_t cause, uint64_t count, int fd);

#endif
