/* ptrace function calls in another process (see inject.h). The target's
 * memory and maps are untrusted like everything else it can write: files
 * are opened through /proc/PID/map_files (or by path with the mapping's
 * inode checked), every read is bounded. */
#include <elf.h>
#include <errno.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "collect/inject.h"
#include "symbols/elfsym.h"
#include "util/util.h"

#define XSTATE_MAX 32768
#define MAX_PENDING 64

struct range {
	uint64_t lo, hi;
};

struct injector {
	pid_t pid, tid;
	struct user_regs_struct saved;
	unsigned char *xstate;
	size_t xlen;
	uint64_t cursor; /* next free byte below the saved stack, growing down */
	uint64_t stopped_at;
	siginfo_t pending[MAX_PENDING]; /* signals that arrived during the calls, as they came */
	int npending;
	bool dead;
};

/* ---- the target's maps (util's proc_map) ---- */

static char *read_maps(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	return read_small_file(path, NULL);
}

static int open_mapping(pid_t pid, const struct proc_map *m)
{
	return proc_map__open((int)pid, m->path, m->lo, m->hi, m->ino);
}

/* The runtime's own modules, which kiln treats apart. */
enum runtime_module { RT_OTHER, RT_LIBC, RT_LD, RT_SHIM };

static enum runtime_module runtime_module(const char *path)
{
	const char *b = path_base(path);
	if (!strncmp(b, "libc.so", 7) || !strncmp(b, "libc-", 5))
		return RT_LIBC;
	if (!strncmp(b, "ld-linux", 8) || !strncmp(b, "ld-2.", 5))
		return RT_LD;
	return strstr(b, "libkiln_shim") ? RT_SHIM : RT_OTHER;
}

typedef bool (*map_pred)(const struct proc_map *m, const void *arg);

/* The symbol in the executable mappings that pred accepts: the first
 * readable one decides, or with every_image each is asked until one defines
 * it (its path into path, when given). */
static int symbol_where(pid_t pid, map_pred pred, const void *arg, const char *symbol, uint64_t *addr,
			uint64_t *size, bool every_image, char *path, size_t npath)
{
	char *text = read_maps(pid);
	if (!text)
		return -errno;
	int rc = -ENOENT;
	char *save = NULL;
	/* each file once (its text may be mapped more than once), its symbol
	 * tables read with pread: a 1 GiB executable is never copied */
	uint64_t seen[64];
	size_t nseen = 0;
	for (char *line = strtok_r(text, "\n", &save); line && rc; line = strtok_r(NULL, "\n", &save)) {
		struct proc_map m;
		if (!proc_map__parse(line, &m) || m.perms[2] != 'x' || !pred(&m, arg))
			continue;
		bool again = false;
		for (size_t i = 0; i < nseen && !again; i++)
			again = seen[i] == m.ino;
		if (again)
			continue;
		if (nseen < 64)
			seen[nseen++] = m.ino;
		int fd = open_mapping(pid, &m);
		if (fd < 0)
			continue;
		uint64_t bias, v, sz;
		int b = elfsym__bias(fd, m.lo, m.off, &bias);
		if (b == 0 && elfsym__lookup(fd, symbol, &v, &sz) == 0) {
			*addr = v + bias;
			if (size)
				*size = sz;
			if (path)
				snprintf(path, npath, "%s", m.path);
			rc = 0;
		}
		close(fd);
		if (b != -ENOEXEC && !every_image)
			break;
	}
	free(text);
	return rc;
}

static bool by_name(const struct proc_map *m, const void *arg)
{
	const char *lib = arg;
	return m->path[0] == '/' && (!lib || strstr(path_base(m->path), lib));
}

int inject__symbol(pid_t pid, const char *lib, const char *symbol, uint64_t *addr, uint64_t *size)
{
	return symbol_where(pid, by_name, lib, symbol, addr, size, false, NULL, 0);
}

struct devino {
	dev_t dev;
	ino_t ino;
};

static bool by_ino(const struct proc_map *m, const void *arg)
{
	const struct devino *d = arg;
	return m->ino == d->ino && makedev(m->dev_major, m->dev_minor) == d->dev;
}

int inject__symbol_ino(pid_t pid, dev_t dev, ino_t ino, const char *symbol, uint64_t *addr)
{
	struct devino d = {dev, ino};
	return symbol_where(pid, by_ino, &d, symbol, addr, NULL, false, NULL, 0);
}

/* Whether two descriptors hold the same bytes. */
static bool same_bytes(int a, int b)
{
	struct stat sa, sb;
	if (fstat(a, &sa) < 0 || fstat(b, &sb) < 0 || sa.st_size != sb.st_size)
		return false;
	char x[16384], y[16384];
	for (off_t off = 0; off < sa.st_size;) {
		ssize_t k = pread(a, x, sizeof(x), off);
		if (k <= 0 || pread(b, y, (size_t)k, off) != k || memcmp(x, y, (size_t)k))
			return false;
		off += k;
	}
	return true;
}

int inject__loaded_copy(pid_t pid, int fd, dev_t *dev, ino_t *ino)
{
	char *text = read_maps(pid);
	if (!text)
		return -errno;
	int rc = -ENOENT;
	char *save = NULL;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		struct proc_map m;
		if (!proc_map__parse(line, &m) || m.perms[2] != 'x' || runtime_module(m.path) != RT_SHIM)
			continue;
		int mf = open_mapping(pid, &m);
		bool same = mf >= 0 && same_bytes(mf, fd);
		if (mf >= 0)
			close(mf);
		if (same) {
			*dev = makedev(m.dev_major, m.dev_minor);
			*ino = (ino_t)m.ino;
			rc = 0;
			break;
		}
		rc = -EEXIST;
	}
	free(text);
	return rc;
}

static bool not_runtime(const struct proc_map *m, const void *arg)
{
	(void)arg;
	return m->path[0] == '/' && runtime_module(m->path) == RT_OTHER;
}

bool inject__own_malloc(pid_t pid, char *path, size_t n)
{
	uint64_t a;
	return symbol_where(pid, not_runtime, NULL, "malloc", &a, NULL, true, path, n) == 0;
}

bool inject__dynamic(pid_t pid)
{
	char *text = read_maps(pid);
	bool dyn = text && (strstr(text, "/ld-linux") || strstr(text, "/ld-2.") || strstr(text, "/ld64"));
	free(text);
	return dyn;
}

/* ---- where a stopped thread may be made to call ---- */

struct unsafe {
	struct range libc, ld, shim, lockwait[2];
	uint64_t got_owner; /* the loaded shim's kiln_got_owner, or 0 */
	pid_t pid;
};

static void unsafe_ranges(pid_t pid, struct unsafe *u)
{
	memset(u, 0, sizeof(*u));
	char *text = read_maps(pid);
	char *save = NULL;
	for (char *line = text ? strtok_r(text, "\n", &save) : NULL; line; line = strtok_r(NULL, "\n", &save)) {
		struct proc_map m;
		if (!proc_map__parse(line, &m) || m.perms[2] != 'x' || m.path[0] != '/')
			continue;
		enum runtime_module k = runtime_module(m.path);
		struct range *r = k == RT_LIBC ? &u->libc : k == RT_LD ? &u->ld : k == RT_SHIM ? &u->shim : NULL;
		if (r && !r->hi) {
			r->lo = m.lo;
			r->hi = m.hi;
		}
	}
	free(text);
	uint64_t a, sz;
	if (inject__symbol(pid, "libc", "__lll_lock_wait_private", &a, &sz) == 0)
		u->lockwait[0] = (struct range){a, a + (sz ? sz : 64)};
	if (inject__symbol(pid, "libc", "__lll_lock_wait", &a, &sz) == 0)
		u->lockwait[1] = (struct range){a, a + (sz ? sz : 64)};
	u->pid = pid;
	if (u->shim.hi && inject__symbol(pid, "libkiln_shim", "kiln_got_owner", &a, NULL) == 0)
		u->got_owner = a;
}

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
static int wait_tid(pid_t tid, int *status, int ms)
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

/* Seize tid and stop it. 1 stopped and safe (kept), 0 not (let go), -errno. */
static int try_thread(struct injector *in, const struct unsafe *u, pid_t tid)
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
	for (;;) {
		int w = wait_tid(tid, &st, 200);
		if (w <= 0)
			return w < 0 ? 0 : (ptrace(PTRACE_DETACH, tid, NULL, NULL), 0);
		unsigned event = (unsigned)st >> 16;
		if (event == PTRACE_EVENT_STOP)
			break; /* our interrupt (or a group stop) */
		/* a signal on its way to the thread: let it through, wait on */
		int sig = WSTOPSIG(st);
		if (ptrace(PTRACE_CONT, tid, NULL, (void *)(long)sig) < 0)
			return 0;
	}
	struct user_regs_struct r;
	if (ptrace(PTRACE_GETREGS, tid, NULL, &r) < 0 || !safe_point(u, &r) || holds_got_lock(u, tid)) {
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
	unsafe_ranges(pid, &u);
	pid_t tids[4096];
	uint64_t start = now_ns();
	int rc = 0;
	while (!in->tid) {
		int nt = task_list(pid, tids, 4096);
		if (nt < 0) {
			snprintf(err, n, "cannot list the threads of pid %d: %s", (int)pid, strerror(-nt));
			rc = nt;
			goto fail;
		}
		for (int i = 0; i < nt && !in->tid; i++) {
			int t = try_thread(in, &u, tids[i]);
			if (t < 0) {
				snprintf(err, n, "cannot ptrace pid %d: %s", (int)pid, strerror(-t));
				rc = t;
				goto fail;
			}
		}
		if (in->tid)
			break;
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

static volatile sig_atomic_t *cancel_flag;

void inject__cancel_on(volatile sig_atomic_t *flag)
{
	cancel_flag = flag;
}

/* Keep a signal that arrived during a call, with its siginfo (sig < 0: a
 * stop, no siginfo to read), to send again at the end. */
static void hold_signal(struct injector *in, int sig)
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

int inject__call(struct injector *in, uint64_t fn, uint64_t a0, uint64_t a1, uint64_t a2, int timeout_ms,
		 uint64_t *ret)
{
	if (in->dead)
		return -ESRCH;
	struct user_regs_struct r = in->saved;
	uint64_t zero = 0;
	uint64_t sp = (in->cursor - 64) & ~15ull;
	sp -= 8; /* as at a function's entry: the return address, 0 */
	struct iovec l = {&zero, 8}, rm = {(void *)(uintptr_t)sp, 8};
	if (process_vm_writev(in->tid, &l, 1, &rm, 1, 0) != 8)
		return -EFAULT;
	r.rip = fn;
	r.rsp = sp;
	r.rdi = a0;
	r.rsi = a1;
	r.rdx = a2;
	r.rax = 0;
	r.orig_rax = (unsigned long long)-1; /* no system call to restart on these registers */
	if (ptrace(PTRACE_SETREGS, in->tid, NULL, &r) < 0 || ptrace(PTRACE_CONT, in->tid, NULL, NULL) < 0)
		return -errno;
	uint64_t start = now_ns();
	for (;;) {
		int st;
		int w = wait_tid(in->tid, &st, 50);
		if (w < 0) {
			in->dead = true;
			return -ESRCH;
		}
		/* the deadline is wall time, whatever arrives meanwhile (a timer
		 * every 10 ms stops the thread again and again); kiln's own
		 * SIGINT or SIGTERM ends the wait too */
		bool cancelled = cancel_flag && *cancel_flag;
		bool over = cancelled || now_ns() - start > (uint64_t)timeout_ms * 1000000ull;
		if (w == 0) {
			if (!over)
				continue;
			/* stop it where it is; inject__end puts everything back */
			ptrace(PTRACE_INTERRUPT, in->tid, NULL, NULL);
			for (int i = 0; i < 20; i++) {
				w = wait_tid(in->tid, &st, 50);
				if (w < 0) {
					in->dead = true;
					return -ESRCH;
				}
				if (w == 1)
					break;
			}
			if (w == 1 && ((unsigned)st >> 16) != PTRACE_EVENT_STOP)
				hold_signal(in, WSTOPSIG(st)); /* stopped on its way in: it stays held */
			return cancelled ? -EINTR : -ETIMEDOUT;
		}
		unsigned event = (unsigned)st >> 16;
		int sig = WSTOPSIG(st);
		if (event == PTRACE_EVENT_STOP) { /* a group stop: it stops after the calls */
			if (sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU)
				hold_signal(in, -SIGSTOP);
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
		hold_signal(in, sig);
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
	free(in);
	return stopped;
}
