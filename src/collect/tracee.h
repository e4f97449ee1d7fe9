/* What a thread kiln stopped is left with. */
#ifndef KILN_COLLECT_TRACEE_H
#define KILN_COLLECT_TRACEE_H

#include <stdbool.h>
#include <sys/types.h>
#include <sys/user.h>

/* The kernel's restart codes (include/linux/errno.h; never seen by a
 * program): what an interrupted system call's rax holds at a stop. */
#define ERESTARTSYS_ 512
#define ERESTARTNOINTR_ 513
#define ERESTARTNOHAND_ 514
#define ERESTART_RESTARTBLOCK_ 516

/* tid, stopped by kiln's PTRACE_INTERRUPT (not a group stop) with its
 * registers r: where that stop ended a wait without end that the kernel
 * never restarts (epoll_wait with timeout -1, sigwaitinfo, semop, msgrcv,
 * io_getevents without a timeout: they return EINTR, signal(7)), the wait
 * is set to restart unless a handler runs (-ERESTARTNOHAND, as poll's is),
 * in r and in the thread: TRACEE_KEPT. Without kiln the call would not have
 * ended; a signal with a handler still ends it with EINTR. The same calls
 * with a timeout keep their EINTR (the time they had left is not known; a
 * stop by SIGSTOP ends them so too): TRACEE_TIMED_EINTR, for the caller to
 * count. Else TRACEE_AS_IS. r NULL: the registers are read here. */
enum tracee_wait { TRACEE_AS_IS, TRACEE_KEPT, TRACEE_TIMED_EINTR };
enum tracee_wait tracee__keep_waiting(pid_t tid, struct user_regs_struct *r);

#endif
