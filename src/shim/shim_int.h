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
#include "shim/got.h"

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

extern malloc_fn real_malloc;
extern calloc_fn real_calloc;
extern realloc_fn real_realloc;
extern free_fn real_free;

extern int g_sock;                 /* the channel to the recorder (ring.h) */
extern ino_t g_sock_ino;           /* its inode */
extern pid_t g_pid, g_recorder;
extern volatile int g_recorder_gone;
extern uint64_t g_ring_bytes;      /* bytes of rings this process holds */
extern int g_py_fin_sent;          /* RING_PYFIN written in this image */

/* Attached (attach.c): each attach is a generation; a thread's ring from an
 * earlier one is not written again. */
extern int g_attached;
extern uint32_t g_attach_gen;
extern uint64_t g_attach_sample;   /* the next attach's --heap-sample mean */
extern int g_inflight;             /* threads inside record() while attached */
extern char kiln_ctl[256];         /* the recorder's snapshot socket (exported) */
/* Every ring made while attached, so that detaching unmaps them all. */
#define ATTACH_RINGS 131072
struct ring_ref {
	void *hdr;
	size_t size;
};
extern struct ring_ref *g_ringrefs;
extern uint32_t g_nringrefs;
/* The hooks GOT slots are pointed at, with dlopen's and dlclose's (shim.c,
 * where the hooks' local names are) */

extern const struct got_hook attach_hooks[];
extern const size_t attach_nhooks;
void *attach_dlopen(const char *file, int mode);
int attach_dlclose(void *h);
/* The recorder died without detaching: put the program's slots back. */
void attach_lost_recorder(void);

/* Look the real functions up (once); through handle (RTLD_DEFAULT when
 * attached); one symbol. */
void resolve_real(void);
void resolve_alloc(void *handle);
void *real_sym(void *handle, const char *name);
/* Once per process: own text, caches, fork handlers, Python. */
void process_setup(void);
/* A new process image (launch, fork, attach): new nonce, ring ids, seqs. */
void new_image(void);
/* This thread's state, its ring made if need be (NULL: not recording). */
struct tstate *thread_state(void);
/* Whether the recorder is still there (false once its socket hung up). */
bool recorder_alive(void);
/* Send one message to the recorder (ring.h), with a descriptor or -1. */
bool channel_send(uint16_t type, uint64_t cause, uint64_t count, int fd);

#endif
