/* What a thread kiln stopped is left with (tracee.h). */
#include <errno.h>
#include <stddef.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include "collect/tracee.h"

/* The calls the kernel ends with EINTR at any stop and never restarts:
 * 1 where they wait without a time limit, 0 with one, -1 another call
 * (their arguments are still in the registers at a system call's exit:
 * rdi, rsi, rdx, r10, r8). */
static int endless_wait(const struct user_regs_struct *r)
{
	switch ((long)r->orig_rax) {
	case SYS_epoll_wait:
	case SYS_epoll_pwait:
		return (int)r->r10 < 0; /* int timeout, -1: none */
	case SYS_epoll_pwait2:
	case SYS_semtimedop:
		return r->r10 == 0; /* struct timespec *, NULL: none */
	case SYS_rt_sigtimedwait:
		return r->rdx == 0; /* sigwaitinfo */
	case SYS_io_getevents:
		return r->r8 == 0;
	case SYS_semop:
	case SYS_msgrcv:
	case SYS_msgsnd:
		return 1;
	default:
		return -1;
	}
}

enum tracee_wait tracee__keep_waiting(pid_t tid, struct user_regs_struct *r)
{
	struct user_regs_struct own;
	if (!r) {
		if (ptrace(PTRACE_GETREGS, tid, NULL, &own) < 0)
			return TRACEE_AS_IS;
		r = &own;
	}
	/* a 64-bit thread's call (cs 0x33): a 32-bit one's numbers are others */
	if (r->cs != 0x33 || (long long)r->orig_rax < 0 || (long long)r->rax != -EINTR)
		return TRACEE_AS_IS;
	int endless = endless_wait(r);
	if (endless < 0)
		return TRACEE_AS_IS;
	if (endless == 0) {
		/* told once: a thread stopped again before it got back to its code
		 * (kiln's next interrupt came while it waited for a CPU) shows the
		 * same registers but rcx, which the syscall instruction clobbers
		 * and kiln set the first time to what no call leaves there (the
		 * kernel then returns by iret) */
		if (r->rcx == ~r->rip)
			return TRACEE_AS_IS;
		r->rcx = ~r->rip;
		ptrace(PTRACE_SETREGS, tid, NULL, r);
		return TRACEE_TIMED_EINTR;
	}
	unsigned long long was = r->rax;
	r->rax = (unsigned long long)-ERESTARTNOHAND_;
	if (ptrace(PTRACE_SETREGS, tid, NULL, r) == 0)
		return TRACEE_KEPT;
	r->rax = was;
	return TRACEE_AS_IS;
}
