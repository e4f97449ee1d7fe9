/* Calls that return through a signal frame (see the comment below and
 * inject.h): a kiln killed in the middle of a call leaves the thread where
 * it was. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>
#include "collect/inject.h"
#include "collect/inject_int.h"
#include "collect/tracee.h"
#include "util/util.h"

/* ---- calls that return through a signal frame ----
 *
 * A call whose return address is 0 ends in a SIGSEGV that kiln catches; were
 * kiln killed meanwhile, the program would die of it. So where it can, a
 * call returns instead into code that runs rt_sigreturn: the shim's
 * kiln_call_return (which first stores the result where %rbx points), or,
 * before the shim is loaded and for calls whose result is not needed,
 * libc's own __restore_rt. The frame above the return address holds the
 * thread's stopped registers (an interrupted system call set to restart),
 * its XSAVE area and its signal mask: the thread comes back exactly where it
 * was, with kiln or without.
 *
 * kiln learns the end from a marker: a signal the program ignores (SIGURG,
 * SIGWINCH, SIGCHLD, or one it set to SIG_IGN), queued by kiln while the
 * call runs with every asynchronous signal blocked. The restored mask lets
 * it through, and a tracer sees even an ignored signal: it stops the thread
 * right after rt_sigreturn. Without kiln it is discarded; signals that came
 * during the call stay pending and are delivered where the thread was.
 *
 * rt_sigreturn also resets the thread's restart block, so a thread stopped
 * in a system call that restarts through it (nanosleep, poll or a futex
 * with a timeout: -ERESTART_RESTARTBLOCK) would see EINTR: inject__begin
 * prefers any other, else lets a sleeper run until its call returns (for a
 * bounded time: enum round in inject.c); failing that, such a thread makes
 * its calls the old way. */

#define UC_FP_XSTATE_ 0x1
#define UC_SIGCONTEXT_SS_ 0x2
#define UC_STRICT_RESTORE_SS_ 0x4
#define FP_XSTATE_MAGIC1_ 0x46505853u
#define FP_XSTATE_MAGIC2_ 0x46505845u

/* The kernel's x86-64 struct rt_sigframe as rt_sigreturn reads it, at the
 * stack pointer less 8 (the return address the call pops). */
struct kframe {
	uint64_t pretcode;
	uint64_t uc_flags, uc_link;
	uint64_t ss_sp;
	int32_t ss_flags, ss_pad;
	uint64_t ss_size;
	uint64_t r8, r9, r10, r11, r12, r13, r14, r15, rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip, eflags;
	uint16_t cs, gs, fs, ss;
	uint64_t err, trapno, oldmask, cr2, fpstate, reserved1[8];
	uint64_t sigmask;
	uint64_t result; /* kiln_call_return stores the call's result here (a real frame's siginfo) */
	uint8_t info[120];
};
_Static_assert(offsetof(struct kframe, r8) == 48, "ucontext's mcontext");
_Static_assert(offsetof(struct kframe, sigmask) == 304, "ucontext's sigmask");

static uint64_t sigbit(int sig)
{
	return 1ull << (sig - 1);
}

/* Signals the kernel raises for a fault, never blocked for a call (blocked,
 * a fault in the call would reset the program's handler to the default). */
static const uint64_t FAULTS = (1ull << (SIGSEGV - 1)) | (1ull << (SIGBUS - 1)) | (1ull << (SIGFPE - 1)) |
			       (1ull << (SIGILL - 1)) | (1ull << (SIGTRAP - 1)) | (1ull << (SIGSYS - 1));

static uint64_t status_mask(const char *text, const char *key)
{
	const char *p = text ? strstr(text, key) : NULL;
	return p ? strtoull(p + strlen(key), NULL, 16) : ~0ull;
}

/* A signal the program neither catches nor blocks in this thread, and that
 * is ignored (by default, or set to SIG_IGN), or 0. */
static int choose_marker(pid_t pid, uint64_t blocked)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	char *text = read_small_file(path, NULL);
	uint64_t caught = status_mask(text, "\nSigCgt:\t"), ignored = status_mask(text, "\nSigIgn:\t");
	free(text);
	if (caught == ~0ull)
		return 0;
	uint64_t busy = caught | blocked | FAULTS | sigbit(SIGKILL) | sigbit(SIGSTOP) | sigbit(SIGCONT);
	static const int by_default[] = {SIGURG, SIGWINCH, SIGCHLD};
	for (size_t i = 0; i < sizeof(by_default) / sizeof(by_default[0]); i++)
		if (!(busy & sigbit(by_default[i])))
			return by_default[i];
	for (int sig = 1; sig <= 64; sig++)
		if ((ignored & sigbit(sig)) && !(busy & sigbit(sig)))
			return sig;
	return 0;
}

/* The registers the thread resumes with at regs: an interrupted system call
 * set to run again (what the kernel does when it resumes a thread whose
 * call a signal without handler interrupted). False where that takes the
 * restart block. */
bool inject_resumed(pid_t tid, const struct user_regs_struct *regs, struct user_regs_struct *out)
{
	*out = *regs;
	if ((long long)regs->orig_rax < 0)
		return true;
	long r = (long)regs->rax;
	if (r == -ERESTART_RESTARTBLOCK_)
		return false;
	/* stopped after the kernel made that restart ready (rax restart_syscall's
	 * number, rip back on the `syscall` instruction) and before the thread
	 * made it: a thread just let go from a stop in nanosleep, seized again
	 * before it ran (on a loaded machine, often) */
	if (regs->rax == SYS_restart_syscall) {
		errno = 0;
		long text = ptrace(PTRACE_PEEKTEXT, tid, (void *)(uintptr_t)regs->rip, NULL);
		if (errno == 0 && (text & 0xffff) == 0x050f)
			return false;
	}
	if (r == -ERESTARTSYS_ || r == -ERESTARTNOINTR_ || r == -ERESTARTNOHAND_) {
		out->rax = regs->orig_rax;
		out->rip -= 2;
	}
	out->orig_rax = (unsigned long long)-1;
	return true;
}

void inject_frame_prepare(struct injector *in)
{
	/* what a call needs to return through a signal frame (frame_call) */
	if (ptrace(PTRACE_GETSIGMASK, in->tid, (void *)8, &in->mask) == 0)
		in->marker = choose_marker(in->pid, in->mask);
	/* a signal frame's XSAVE area is ptrace's with the software bytes a
	 * frame carries (ptrace puts XCR0 there): magic, sizes, features */
	if (in->xlen >= 576 && in->xlen <= XSTATE_MAX - 64) {
		uint64_t xcr0;
		memcpy(&xcr0, in->xstate + 464, 8);
		uint32_t sw[12] = {FP_XSTATE_MAGIC1_, (uint32_t)in->xlen + 4, (uint32_t)xcr0, (uint32_t)(xcr0 >> 32),
				   (uint32_t)in->xlen};
		in->framestate = xmalloc(in->xlen);
		memcpy(in->framestate, in->xstate, in->xlen);
		memcpy(in->framestate + 464, sw, sizeof(sw));
		in->xsize = (uint32_t)in->xlen;
	}
}

/* libc's __restore_rt: `mov $15,%rax; syscall`, found in its code. */
uint64_t inject_find_restorer(pid_t pid)
{
	static const unsigned char pat[] = {0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05};
	struct unsafe u;
	inject_unsafe_ranges(pid, &u);
	if (!u.libc.hi || u.libc.hi - u.libc.lo > (256u << 20))
		return 1;
	static unsigned char buf[65536 + sizeof(pat)];
	for (uint64_t at = u.libc.lo; at < u.libc.hi; at += 65536) {
		size_t n = (size_t)(u.libc.hi - at < sizeof(buf) ? u.libc.hi - at : sizeof(buf));
		struct iovec l = {buf, n}, r = {(void *)(uintptr_t)at, n};
		if (process_vm_readv(pid, &l, 1, &r, 1, 0) != (ssize_t)n)
			return 1;
		unsigned char *hit = memmem(buf, n, pat, sizeof(pat));
		if (hit)
			return at + (uint64_t)(hit - buf);
	}
	return 1;
}

bool inject_framed(const struct injector *in, uint64_t via)
{
	struct user_regs_struct r;
	return via > 1 && in->marker && in->xsize && inject_resumed(in->tid, &in->saved, &r);
}

static bool our_marker(const struct injector *in, int sig)
{
	siginfo_t si;
	return sig == in->marker && ptrace(PTRACE_GETSIGINFO, in->tid, NULL, &si) == 0 && si.si_code == SI_TKILL &&
	       si.si_pid == getpid();
}

int inject_frame_call(struct injector *in, uint64_t via, uint64_t fn, uint64_t a0, uint64_t a1, uint64_t a2,
		      int timeout_ms, uint64_t *ret)
{
	struct user_regs_struct back, r = in->saved;
	inject_resumed(in->tid, &in->saved, &back);
	/* from the top: the XSAVE area (64-aligned, FP_XSTATE_MAGIC2 after it),
	 * then the frame, its return address where the call's stack begins */
	uint64_t fp = (in->cursor - in->xsize - 4 - 64) & ~63ull;
	uint64_t at = ((fp - sizeof(struct kframe)) & ~15ull) - 8;
	struct kframe f;
	memset(&f, 0, sizeof(f));
	f.pretcode = via;
	f.uc_flags = UC_FP_XSTATE_ | UC_SIGCONTEXT_SS_ | UC_STRICT_RESTORE_SS_;
	f.ss_flags = 3; /* no valid mode: the alternate stack is left as it is */
	f.r8 = back.r8, f.r9 = back.r9, f.r10 = back.r10, f.r11 = back.r11;
	f.r12 = back.r12, f.r13 = back.r13, f.r14 = back.r14, f.r15 = back.r15;
	f.rdi = back.rdi, f.rsi = back.rsi, f.rbp = back.rbp, f.rbx = back.rbx;
	f.rdx = back.rdx, f.rax = back.rax, f.rcx = back.rcx, f.rsp = back.rsp;
	f.rip = back.rip, f.eflags = back.eflags;
	f.cs = (uint16_t)back.cs, f.ss = (uint16_t)back.ss, f.fs = (uint16_t)back.fs, f.gs = (uint16_t)back.gs;
	f.fpstate = fp;
	f.sigmask = in->mask;
	uint32_t magic2 = FP_XSTATE_MAGIC2_;
	struct iovec l[3] = {{&f, sizeof(f)}, {in->framestate, in->xsize}, {&magic2, 4}};
	struct iovec rm[2] = {{(void *)(uintptr_t)at, sizeof(f)}, {(void *)(uintptr_t)fp, in->xsize + 4}};
	if (process_vm_writev(in->tid, l, 1, rm, 1, 0) != (ssize_t)sizeof(f) ||
	    process_vm_writev(in->tid, l + 1, 2, rm + 1, 1, 0) != (ssize_t)(in->xsize + 4))
		return -EFAULT;
	inject_call_regs(&r, fn, at, a0, a1, a2);
	r.rbx = at + offsetof(struct kframe, result);
	uint64_t during = in->mask | ~FAULTS;
	if (ptrace(PTRACE_SETREGS, in->tid, NULL, &r) < 0 || ptrace(PTRACE_SETSIGMASK, in->tid, (void *)8, &during) < 0)
		return -errno;
	in->mask_set = true;
	if (syscall(SYS_tgkill, in->pid, in->tid, in->marker) < 0 || ptrace(PTRACE_CONT, in->tid, NULL, NULL) < 0)
		return -errno;
	uint64_t start = now_ns();
	bool over = false, cancelled = false;
	for (;;) {
		int st;
		int w = inject_wait_tid(in->tid, &st, 50);
		if (w < 0) {
			in->dead = true;
			return -ESRCH;
		}
		if (w == 0 && !over) {
			cancelled = inject_cancel_flag && *inject_cancel_flag;
			over = cancelled || now_ns() - start > (uint64_t)timeout_ms * 1000000ull;
			if (over) /* stop it where it is; inject__end puts everything back */
				ptrace(PTRACE_INTERRUPT, in->tid, NULL, NULL);
			continue;
		}
		if (w == 0) {
			if (now_ns() - start > (uint64_t)(timeout_ms + 1000) * 1000000ull)
				return cancelled ? -EINTR : -ETIMEDOUT; /* not even stopped: inject__end detaches */
			continue;
		}
		unsigned event = (unsigned)st >> 16;
		int sig = WSTOPSIG(st);
		if (event == PTRACE_EVENT_STOP) { /* our interrupt, or a group stop */
			if (sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU)
				inject_hold_signal(in, -SIGSTOP);
			if (over)
				return cancelled ? -EINTR : -ETIMEDOUT;
			ptrace(PTRACE_CONT, in->tid, NULL, NULL);
			continue;
		}
		if (our_marker(in, sig)) {
			struct user_regs_struct now;
			if (ptrace(PTRACE_GETREGS, in->tid, NULL, &now) < 0)
				return -errno;
			if (now.rip != back.rip || now.rsp != back.rsp) {
				/* the call unblocked it: block it again, queue another */
				uint64_t m = 0;
				ptrace(PTRACE_GETSIGMASK, in->tid, (void *)8, &m);
				m |= sigbit(in->marker);
				ptrace(PTRACE_SETSIGMASK, in->tid, (void *)8, &m);
				syscall(SYS_tgkill, in->pid, in->tid, in->marker);
				ptrace(PTRACE_CONT, in->tid, NULL, NULL);
				continue;
			}
			/* back where it was: these are its registers now */
			in->saved = now;
			in->mask_set = false;
			in->framed++;
			if (via == in->via && ret && inject__read(in, at + offsetof(struct kframe, result), ret, 8) < 0)
				return -EFAULT;
			return 0;
		}
		if (sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE) {
			siginfo_t si;
			if (ptrace(PTRACE_GETSIGINFO, in->tid, NULL, &si) == 0 && si.si_code > 0)
				return -EFAULT; /* the call itself crashed: nothing more is run */
		}
		/* someone's signal: held back, sent again once the thread is its own */
		inject_hold_signal(in, sig);
		if (over)
			return cancelled ? -EINTR : -ETIMEDOUT;
		ptrace(PTRACE_CONT, in->tid, NULL, NULL);
	}
}
