/* ptrace function calls in another process (see inject.h): a thread
 * stopped at a safe point, the calls, everything put back at the end. Its
 * maps and symbols are read in inject_maps.c, calls that return through a
 * signal frame made in inject_frame.c. The target's memory is untrusted like
 * everything else it can write. */
#include <elf.h>
#include <errno.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "collect/inject.h"
#include "collect/inject_int.h"
#include "collect/tracee.h"
#include "util/util.h"

/* ---- where a stopped thread may be made to call ---- */

static bool in(const struct range *r, uint64_t a)
{
	return a >= r->lo && a < r->hi;
}

static bool forking_syscall(long nr)
{
	return nr == SYS_clone || nr == SYS_fork || nr == SYS_vfork
#ifdef SYS_clone3
	       || nr == SYS_clone3
#endif
		;
}

/* The thread is in fork, vfork or clone right now (/proc's syscall file):
 * not seized at all (a vfork parent cannot stop until its child execs). */
static bool thread_forking(pid_t pid, pid_t tid)
{
	char path[96];
	snprintf(path, sizeof(path), "/proc/%d/task/%d/syscall", (int)pid, (int)tid);
	char *t = read_small_file(path, NULL);
	long nr = t && t[0] != 'r' ? strtol(t, NULL, 10) : -1; /* "running": none */
	free(t);
	return nr >= 0 && forking_syscall(nr);
}

/* A thread stopped here may run dlopen: not inside the allocator (it may
 * hold an arena lock), the dynamic linker (its lock) or the shim. In a
 * system call, only those the allocator makes while holding a lock are
 * suspect; running, any point in libc or ld.so is. */
static bool safe_point(const struct unsafe *u, const struct user_regs_struct *r)
{
	uint64_t ip = r->rip;
	if (in(&u->shim, ip) || in(&u->ld, ip))
		return false;
	if ((long long)r->orig_rax >= 0) {
		long nr = (long)r->orig_rax;
		if (in(&u->lockwait[0], ip) || in(&u->lockwait[1], ip))
			return false;
		/* fork holds every allocator lock around its clone; a vfork
		 * parent waits for its child */
		if (forking_syscall(nr))
			return false;
		if (in(&u->libc, ip) && (nr == SYS_mmap || nr == SYS_munmap || nr == SYS_brk || nr == SYS_mprotect ||
					nr == SYS_madvise || nr == SYS_mremap))
			return false;
		return true;
	}
	return !in(&u->libc, ip);
}

/* The stopped thread holds the loaded shim's GOT lock (in a system call
 * made while patching or restoring slots, where its instruction pointer is
 * in libc): made to call kiln_detach, it would wait for itself. */
static bool holds_got_lock(const struct unsafe *u, pid_t tid)
{
	int32_t owner = 0;
	struct iovec l = {&owner, 4}, r = {(void *)(uintptr_t)u->got_owner, 4};
	return u->got_owner && process_vm_readv(u->pid, &l, 1, &r, 1, 0) == 4 && owner == (int32_t)tid;
}

/* Wait for tid to stop, up to ms. 1 stopped (*status), 0 not yet, -1 gone. */
int inject_wait_tid(pid_t tid, int *status, int ms)
{
	for (int i = 0; i <= ms * 10; i++) {
		pid_t w = waitpid(tid, status, __WALL | WNOHANG);
		if (w == tid)
			return WIFEXITED(*status) || WIFSIGNALED(*status) ? -1 : 1;
		if (w < 0)
			return -1;
		struct timespec ts = {0, 100000};
		nanosleep(&ts, NULL);
	}
	return 0;
}

static int task_list(pid_t pid, pid_t *out, int max)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	if (!d)
		return -errno;
	int n = 0;
	out[n++] = pid; /* the main thread first */
	struct dirent *e;
	while ((e = readdir(d)) && n < max) {
		long t = atol(e->d_name);
		if (t > 0 && t != pid)
			out[n++] = (pid_t)t;
	}
	closedir(d);
	return n;
}

/* The rounds of the search for a thread to make the calls in (inject.h):
 *   R_WAITING   a thread waiting in a system call whose calls can return
 *               through a signal frame (kill-safe);
 *   R_SLEEPERS  one in a timed sleep or wait (a call that restarts through
 *               its restart block, which rt_sigreturn resets, that restart
 *               made ready by the kernel included), or seen so in the first
 *               round and awake now, let run until that call (or its next)
 *               returns, for a bounded time, then taken there;
 *   R_ANY       any thread at a safe point, as before (a thread running the
 *               program's own code last of all: it may be inside a
 *               library's constructor, holding the loader's lock while
 *               another thread waits on a lock of its own). */
enum round { R_WAITING, R_SLEEPERS, R_ANY };

static bool restart_block(pid_t tid, const struct user_regs_struct *r)
{
	struct user_regs_struct back;
	return (long long)r->orig_rax >= 0 && !inject_resumed(tid, r, &back);
}

/* tid, seized and stopped in a timed sleep or wait: let it run up to ms
 * until that system call returns, and keep it stopped at its exit (*r its
 * registers there). 1 kept, 0 let go (or gone). */
static int await_return(struct injector *in, pid_t tid, const struct unsafe *u, struct user_regs_struct *r, int ms)
{
	uint64_t end = now_ns() + (uint64_t)ms * 1000000ull;
	int sig = 0;
	if (ptrace(PTRACE_SETOPTIONS, tid, NULL, (void *)(long)PTRACE_O_TRACESYSGOOD) < 0)
		goto let_go;
	for (;;) {
		if (ptrace(PTRACE_SYSCALL, tid, NULL, (void *)(long)sig) < 0)
			return 0;
		sig = 0;
		int st, w = 0;
		while (w == 0 && now_ns() < end)
			w = inject_wait_tid(tid, &st, 5);
		if (w < 0)
			return 0;
		if (w == 0 || ((unsigned)st >> 16) != 0)
			break; /* not within ms, or a group stop: let go */
		if (WSTOPSIG(st) != (SIGTRAP | 0x80)) {
			sig = WSTOPSIG(st); /* the program's signal: delivered, as it came */
			continue;
		}
		long rax;
		if (ptrace(PTRACE_GETREGS, tid, NULL, r) < 0)
			return 0;
		rax = (long)r->rax;
		/* the exit of a call that ended by itself (at an entry, rax is
		 * -ENOSYS; a call cut by a signal goes on to its delivery) */
		if (rax != -ENOSYS && (rax < -ERESTART_RESTARTBLOCK_ || rax > -ERESTARTSYS_) && !restart_block(tid, r) &&
		    safe_point(u, r) && !holds_got_lock(u, tid))
			return 1;
	}
let_go:
	if (ptrace(PTRACE_INTERRUPT, tid, NULL, NULL) == 0) {
		int st;
		for (int i = 0; i < 40; i++) {
			int w = inject_wait_tid(tid, &st, 50);
			if (w < 0)
				return 0;
			if (w == 0)
				continue;
			/* stopped to deliver a signal: detached from there, the
			 * signal goes with it (detaching with 0 would drop it) */
			if (((unsigned)st >> 16) == 0 && WSTOPSIG(st) != (SIGTRAP | 0x80)) {
				ptrace(PTRACE_DETACH, tid, NULL, (void *)(long)WSTOPSIG(st));
				return 0;
			}
			if (((unsigned)st >> 16) == PTRACE_EVENT_STOP && WSTOPSIG(st) == SIGTRAP &&
			    tracee__keep_waiting(tid, NULL) == TRACEE_TIMED_EINTR)
				in->waits_ended++;
			break;
		}
	}
	ptrace(PTRACE_DETACH, tid, NULL, NULL);
	return 0;
}

/* The threads the first round found asleep in a call that restarts through
 * its restart block. */
#define SLEEPERS_MAX 64
struct sleepers {
	pid_t tid[SLEEPERS_MAX];
	int n;
};

/* Seize tid and stop it. 1 stopped and safe (kept), 0 not (let go), -errno.
 * wait_ms: in R_SLEEPERS, how long a sleeper may be waited for. */
static int try_thread(struct injector *in, const struct unsafe *u, pid_t tid, enum round round, int wait_ms,
		      struct sleepers *seen)
{
	if (thread_forking(in->pid, tid))
		return 0;
	if (ptrace(PTRACE_SEIZE, tid, NULL, NULL) < 0)
		return errno == ESRCH ? 0 : -errno;
	if (ptrace(PTRACE_INTERRUPT, tid, NULL, NULL) < 0) {
		ptrace(PTRACE_DETACH, tid, NULL, NULL);
		return 0;
	}
	int st;
	uint64_t deadline = now_ns() + 1000000000ull;
	for (;;) {
		int w = inject_wait_tid(tid, &st, 200);
		if (w <= 0)
			return w < 0 ? 0 : (ptrace(PTRACE_DETACH, tid, NULL, NULL), 0);
		unsigned event = (unsigned)st >> 16;
		if (event == PTRACE_EVENT_STOP)
			break; /* our interrupt (or a group stop) */
		/* a signal on its way to the thread: let it through and ask
		 * again, for its stop cleared our interrupt (any trap clears a
		 * pending one: a timer's signal every 2 ms kept kiln waiting
		 * for a stop that never came). A thread whose signals come on
		 * without end is let go with the one in hand */
		int sig = WSTOPSIG(st);
		if (now_ns() > deadline) {
			ptrace(PTRACE_DETACH, tid, NULL, (void *)(long)sig);
			return 0;
		}
		if (ptrace(PTRACE_CONT, tid, NULL, (void *)(long)sig) < 0 || ptrace(PTRACE_INTERRUPT, tid, NULL, NULL) < 0)
			return 0;
	}
	struct user_regs_struct r;
	bool regs = ptrace(PTRACE_GETREGS, tid, NULL, &r) == 0;
	/* our stop may have ended an epoll_wait without end: it waits on,
	 * taken or let go (tracee.h) */
	if (regs && WSTOPSIG(st) == SIGTRAP && tracee__keep_waiting(tid, &r) == TRACEE_TIMED_EINTR)
		in->waits_ended++;
	bool ok = regs && safe_point(u, &r) && !holds_got_lock(u, tid);
	bool asleep = regs && restart_block(tid, &r); /* in a call that restarts through its block */
	bool waiting = regs && (long long)r.orig_rax >= 0 && !asleep;
	if (ok && round == R_WAITING)
		ok = waiting;
	if (asleep && round == R_WAITING && seen->n < SLEEPERS_MAX)
		seen->tid[seen->n++] = tid;
	/* a thread found in (or just back from) a call that needs no restart
	 * block, whatever the round, is taken there: one seen asleep before
	 * may be caught as its sleep returns */
	if (regs && round == R_SLEEPERS && !(ok && waiting)) {
		/* a sleeper is let run to the exit of the call it sleeps in, or
		 * of its next one where it was seen asleep in the first round and
		 * is awake now (a loop that sleeps 20 ms, which on a loaded
		 * machine waits awake for its turn on a CPU) */
		bool sleeper = ok && asleep;
		if (!sleeper && (long long)r.orig_rax < 0)
			for (int i = 0; i < seen->n && !sleeper; i++)
				sleeper = seen->tid[i] == tid;
		if (!sleeper || wait_ms <= 0 || WSTOPSIG(st) != SIGTRAP) /* a group stop stays stopped */
			ok = false;
		else if (!await_return(in, tid, u, &r, wait_ms))
			return 0; /* let go there */
		else
			ok = true;
	}
	if (!ok) {
		ptrace(PTRACE_DETACH, tid, NULL, NULL);
		return 0;
	}
	in->tid = tid;
	in->saved = r;
	return 1;
}

int inject__begin(pid_t pid, int timeout_ms, struct injector **out, char *err, size_t n)
{
	struct injector *in = xcalloc(1, sizeof(*in));
	in->pid = pid;
	struct unsafe u;
	inject_unsafe_ranges(pid, &u);
	pid_t tids[4096];
	uint64_t start = now_ns();
	int rc = 0;
	enum round round = R_WAITING;
	uint64_t sleepers_end = 0; /* R_SLEEPERS: 300 ms in all */
	struct sleepers seen = {.n = 0};
	while (!in->tid) {
		int nt = task_list(pid, tids, 4096);
		if (nt < 0) {
			snprintf(err, n, "cannot list the threads of pid %d: %s", (int)pid, strerror(-nt));
			rc = nt;
			goto fail;
		}
		for (int i = 0; i < nt && !in->tid; i++) {
			int left = round == R_SLEEPERS && now_ns() < sleepers_end
					   ? (int)((sleepers_end - now_ns()) / 1000000)
					   : 0;
			int t = try_thread(in, &u, tids[i], round, left, &seen);
			if (t < 0) {
				char why[160];
				if (t == -EPERM && proc_traced_why(pid, why, sizeof(why)))
					snprintf(err, n, "%s", why);
				else
					snprintf(err, n, "cannot ptrace pid %d: %s", (int)pid, strerror(-t));
				rc = t;
				goto fail;
			}
		}
		if (in->tid)
			break;
		if (round != R_ANY) {
			round = round == R_WAITING ? R_SLEEPERS : R_ANY;
			sleepers_end = now_ns() + 300 * 1000000ull;
			continue;
		}
		if (now_ns() - start > (uint64_t)timeout_ms * 1000000ull) {
			snprintf(err, n, "no thread of pid %d came to a point where a library may be loaded "
					 "(all inside the allocator or the dynamic linker) within %d ms",
				 (int)pid, timeout_ms);
			rc = -EAGAIN;
			goto fail;
		}
		usleep(2000);
	}
	in->stopped_at = now_ns();
	in->xstate = xmalloc(XSTATE_MAX);
	struct iovec iov = {in->xstate, XSTATE_MAX};
	if (ptrace(PTRACE_GETREGSET, in->tid, (void *)NT_X86_XSTATE, &iov) == 0) {
		in->xlen = iov.iov_len;
	} else {
		struct user_fpregs_struct *fp = (void *)in->xstate;
		if (ptrace(PTRACE_GETFPREGS, in->tid, NULL, fp) < 0) {
			snprintf(err, n, "cannot read the FPU state of thread %d: %s", (int)in->tid, strerror(errno));
			rc = -errno;
			inject__end(in);
			return rc;
		}
		in->xlen = 0; /* FXSAVE area only */
	}
	in->cursor = (in->saved.rsp - 512) & ~15ull; /* below the red zone, with room to spare */
	inject_frame_prepare(in);
	*out = in;
	return 0;
fail:
	free(in);
	return rc;
}

pid_t inject__tid(const struct injector *in)
{
	return in->tid;
}

uint64_t inject__push(struct injector *in, const void *data, size_t n)
{
	if (n > 65536)
		return 0;
	uint64_t at = (in->cursor - n) & ~15ull;
	struct iovec l = {(void *)data, n}, r = {(void *)(uintptr_t)at, n};
	if (process_vm_writev(in->tid, &l, 1, &r, 1, 0) != (ssize_t)n)
		return 0;
	in->cursor = at;
	return at;
}

int inject__read(struct injector *in, uint64_t addr, void *out, size_t n)
{
	struct iovec l = {out, n}, r = {(void *)(uintptr_t)addr, n};
	return process_vm_readv(in->tid, &l, 1, &r, 1, 0) == (ssize_t)n ? 0 : -EFAULT;
}

volatile sig_atomic_t *inject_cancel_flag;
static int address0_call(struct injector *in, uint64_t fn, uint64_t a0, uint64_t a1, uint64_t a2, int timeout_ms,
			 uint64_t *ret);

void inject__cancel_on(volatile sig_atomic_t *flag)
{
	inject_cancel_flag = flag;
}

/* Keep a signal that arrived during a call, with its siginfo (sig < 0: a
 * stop, no siginfo to read), to send again at the end. */
void inject_hold_signal(struct injector *in, int sig)
{
	if (in->npending >= MAX_PENDING || !sig)
		return;
	siginfo_t *si = &in->pending[in->npending];
	memset(si, 0, sizeof(*si));
	if (sig < 0 || ptrace(PTRACE_GETSIGINFO, in->tid, NULL, si) < 0 || si->si_signo != sig) {
		memset(si, 0, sizeof(*si));
		si->si_signo = sig < 0 ? -sig : sig;
		si->si_code = SI_USER;
	}
	in->npending++;
}

void inject__return_via(struct injector *in, uint64_t tramp)
{
	in->via = tramp;
}

int inject__call_void(struct injector *in, uint64_t fn, uint64_t a0, uint64_t a1, uint64_t a2, int timeout_ms)
{
	if (in->dead)
		return -ESRCH;
	uint64_t ignored;
	if (!in->via && !in->restorer)
		in->restorer = inject_find_restorer(in->pid);
	uint64_t via = in->via ? in->via : in->restorer;
	in->calls++;
	if (inject_framed(in, via))
		return inject_frame_call(in, via, fn, a0, a1, a2, timeout_ms, NULL);
	return address0_call(in, fn, a0, a1, a2, timeout_ms, &ignored);
}

int inject__call(struct injector *in, uint64_t fn, uint64_t a0, uint64_t a1, uint64_t a2, int timeout_ms,
		 uint64_t *ret)
{
	if (in->dead)
		return -ESRCH;
	in->calls++;
	if (inject_framed(in, in->via))
		return inject_frame_call(in, in->via, fn, a0, a1, a2, timeout_ms, ret);
	return address0_call(in, fn, a0, a1, a2, timeout_ms, ret);
}

void inject__counts(const struct injector *in, int *calls, int *framed_calls, int *waits_ended)
{
	*calls = in->calls;
	*framed_calls = in->framed;
	*waits_ended = in->waits_ended;
}

void inject_call_regs(struct user_regs_struct *r, uint64_t fn, uint64_t sp, uint64_t a0, uint64_t a1, uint64_t a2)
{
	r->rip = fn;
	r->rsp = sp;
	r->rdi = a0;
	r->rsi = a1;
	r->rdx = a2;
	r->rax = 0;
	r->eflags &= ~0x400ull;			/* the ABI's direction flag at a call */
	r->orig_rax = (unsigned long long)-1; /* no system call to restart on these registers */
}

/* The old way: return address 0, the SIGSEGV there is the return. */
static int address0_call(struct injector *in, uint64_t fn, uint64_t a0, uint64_t a1, uint64_t a2, int timeout_ms,
			 uint64_t *ret)
{
	struct user_regs_struct r = in->saved;
	uint64_t zero = 0;
	uint64_t sp = (in->cursor - 64) & ~15ull;
	sp -= 8; /* as at a function's entry: the return address, 0 */
	struct iovec l = {&zero, 8}, rm = {(void *)(uintptr_t)sp, 8};
	if (process_vm_writev(in->tid, &l, 1, &rm, 1, 0) != 8)
		return -EFAULT;
	inject_call_regs(&r, fn, sp, a0, a1, a2);
	if (ptrace(PTRACE_SETREGS, in->tid, NULL, &r) < 0 || ptrace(PTRACE_CONT, in->tid, NULL, NULL) < 0)
		return -errno;
	uint64_t start = now_ns();
	for (;;) {
		int st;
		int w = inject_wait_tid(in->tid, &st, 50);
		if (w < 0) {
			in->dead = true;
			return -ESRCH;
		}
		/* the deadline is wall time, whatever arrives meanwhile (a timer
		 * every 10 ms stops the thread again and again); kiln's own
		 * SIGINT or SIGTERM ends the wait too */
		bool cancelled = inject_cancel_flag && *inject_cancel_flag;
		bool over = cancelled || now_ns() - start > (uint64_t)timeout_ms * 1000000ull;
		if (w == 0) {
			if (!over)
				continue;
			/* stop it where it is; inject__end puts everything back */
			ptrace(PTRACE_INTERRUPT, in->tid, NULL, NULL);
			for (int i = 0; i < 20; i++) {
				w = inject_wait_tid(in->tid, &st, 50);
				if (w < 0) {
					in->dead = true;
					return -ESRCH;
				}
				if (w == 1)
					break;
			}
			if (w == 1 && ((unsigned)st >> 16) != PTRACE_EVENT_STOP)
				inject_hold_signal(in, WSTOPSIG(st)); /* stopped on its way in: it stays held */
			return cancelled ? -EINTR : -ETIMEDOUT;
		}
		unsigned event = (unsigned)st >> 16;
		int sig = WSTOPSIG(st);
		if (event == PTRACE_EVENT_STOP) { /* a group stop: it stops after the calls */
			if (sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU)
				inject_hold_signal(in, -SIGSTOP);
			if (over)
				return cancelled ? -EINTR : -ETIMEDOUT; /* stopped: put back at the end */
			ptrace(PTRACE_CONT, in->tid, NULL, NULL);
			continue;
		}
		if (sig == SIGSEGV) {
			struct user_regs_struct now;
			if (ptrace(PTRACE_GETREGS, in->tid, NULL, &now) == 0 && now.rip == 0) {
				*ret = now.rax;
				return 0;
			}
			return -EFAULT; /* the call itself crashed: nothing more is run */
		}
		/* someone's signal: held back, sent again once the thread is its own */
		inject_hold_signal(in, sig);
		if (over)
			return cancelled ? -EINTR : -ETIMEDOUT; /* stopped: put back at the end */
		ptrace(PTRACE_CONT, in->tid, NULL, NULL);
	}
}

uint64_t inject__end(struct injector *in)
{
	if (!in)
		return 0;
	uint64_t stopped = now_ns() - in->stopped_at;
	if (!in->dead) {
		if (in->xstate) {
			if (in->xlen) {
				struct iovec iov = {in->xstate, in->xlen};
				ptrace(PTRACE_SETREGSET, in->tid, (void *)NT_X86_XSTATE, &iov);
			} else {
				ptrace(PTRACE_SETFPREGS, in->tid, NULL, in->xstate);
			}
		}
		ptrace(PTRACE_SETREGS, in->tid, NULL, &in->saved);
		if (in->mask_set) /* a call that did not come back through its frame */
			ptrace(PTRACE_SETSIGMASK, in->tid, (void *)8, &in->mask);
		ptrace(PTRACE_DETACH, in->tid, NULL, NULL);
		/* as they came (a timer's si_value included); codes the kernel
		 * lets only it or the thread itself send go by tgkill */
		for (int i = 0; i < in->npending; i++) {
			siginfo_t *si = &in->pending[i];
			if (si->si_code >= 0 || si->si_code == SI_TKILL ||
			    syscall(SYS_rt_tgsigqueueinfo, in->pid, in->tid, si->si_signo, si) < 0)
				syscall(SYS_tgkill, in->pid, in->tid, si->si_signo);
		}
	}
	free(in->xstate);
	free(in->framestate);
	free(in);
	return stopped;
}
