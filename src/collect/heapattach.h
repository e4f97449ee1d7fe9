/* Heap tracking of a process that is already running (kiln record --heap
 * -p PID), without gdb: the shim is loaded into it with ptrace alone
 * (collect/inject.h) and redirects the allocation functions' GOT slots to
 * itself (src/shim/got.h); detaching puts them back.
 *
 *   attach: dlopen(shim) ─► kiln_attach_prepare ─► pidfd_getfd ─► kiln_attach_start
 *   detach: kiln_detach
 *
 * Each step stops one thread of the target, at a safe point, only for the
 * calls; the time it was stopped is measured and reported. */
#ifndef KILN_COLLECT_HEAPATTACH_H
#define KILN_COLLECT_HEAPATTACH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct heapattach {
	pid_t pid;
	uint64_t detach_fn;   /* kiln_detach in the target */
	int slots;            /* GOT slots redirected */
	uint64_t stopped_ns;  /* how long the thread was stopped to attach */
	uint64_t detach_stopped_ns;
	pid_t tid;            /* the thread that made the calls */
	uint64_t return_fn;   /* kiln_call_return in the target (kill-safe calls) */
	int calls, framed;    /* calls made to attach, and those that returned through a
			       * signal frame (kill-safe: inject.h) */
	int detach_calls, detach_framed;
	int waits_ended;      /* timed waits its stops ended with EINTR (attach and detach) */
	char own_malloc[256]; /* a module with its own malloc, or "" */
};

/* Load shim_path into pid and start recording into the channel whose
 * recorder's end is returned in *fd (a SOCK_SEQPACKET socket). recorder is
 * kiln's pid, ctl its snapshot socket, sample the --heap-sample mean (0:
 * every allocation). 0, or -errno with one line in err:
 * -EBUSY another kiln records its heap, -ENOEXEC it is statically linked,
 * -EPERM/-EACCES ptrace refused. */
int heapattach__start(struct heapattach *ha, pid_t pid, const char *shim_path, pid_t recorder,
		      uint64_t sample, const char *ctl, int *fd, char *err, size_t n);
/* Put the program's slots back and stop recording. 0 or -errno (err). */
int heapattach__stop(struct heapattach *ha, char *err, size_t n);

#endif
