/* Attached mode (kiln record --heap -p PID): the entry points kiln calls in
 * the running program, and the GOT patching that routes its allocator
 * calls to the shim's hooks (shim/got.h) and back. */
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "kiln/ring.h"
#include "shim/got.h"
#include "shim/sample.h"
#include "shim/shim_int.h"

/* ---- attached mode: kiln record --heap -p PID ----
 *
 *   kiln (ptrace, one thread stopped at a safe point):
 *     dlopen(libkiln_shim.so) ─► kiln_attach_prepare("RECORDER_PID SAMPLE CTL_PATH")
 *        returns the recorder's end of a new socket pair; kiln takes a copy
 *        (pidfd_getfd) ─► kiln_attach_start(fd): closes ours, patches the GOTs
 *   … recording …
 *   kiln_detach(): slots restored, recording stopped, rings unmapped, socket closed
 *
 * A recorder that dies instead is noticed by the shim (a look at most every
 * 100 ms of activity, or when a ring fills), which then restores the slots. */
EXPORT int kiln_attach_prepare(const char *cfg);
EXPORT int kiln_attach_start(int fd);
EXPORT int kiln_detach(void);

/* Where kiln's calls above return to (src/collect/inject.c): the result is
 * stored where %rbx points (a callee-saved register kiln set, so the call
 * kept it), then rt_sigreturn through the frame kiln wrote above the return
 * address puts every register, the FPU state and the signal mask back as
 * they were when the thread was stopped. A kiln killed in the middle of a
 * call so leaves a thread that resumes where it was; a live kiln learns the
 * call's end from a signal it queued blocked, which the restored mask lets
 * through. */
__asm__(".text\n"
	".globl kiln_call_return\n"
	".type kiln_call_return, @function\n"
	"kiln_call_return:\n"
	"\tmovq %rax, (%rbx)\n"
	"\tmovl $15, %eax\n" /* SYS_rt_sigreturn */
	"\tsyscall\n"
	"\tud2\n"
	".size kiln_call_return, .-kiln_call_return\n");

typedef void *(*dlopen_fn)(const char *, int);
typedef int (*dlclose_fn)(void *);
static dlopen_fn real_dlopen;
static dlclose_fn real_dlclose;


/* A library loaded while attached gets its slots patched too. (The real
 * dlopen sees the shim as its caller: a library named without a slash is
 * searched along the program's paths, not the calling library's RUNPATH.) */
void *attach_dlopen(const char *file, int mode)
{
	void *h = real_dlopen(file, mode);
	if (h && __atomic_load_n(&g_attached, __ATOMIC_ACQUIRE) && g_state > 0)
		got__patch(attach_hooks, attach_nhooks, (void *)&attach_dlopen);
	return h;
}

/* Slots of a library unloaded since are forgotten (got__restore checks
 * each slot still belongs to a loaded module). */
int attach_dlclose(void *h)
{
	int rc = real_dlclose(h);
	got__prune();
	return rc;
}

static void real_from_default(void)
{
	resolve_alloc(RTLD_DEFAULT);
	real_dlopen = (dlopen_fn)real_sym(RTLD_DEFAULT, "dlopen");
	real_dlclose = (dlclose_fn)real_sym(RTLD_DEFAULT, "dlclose");
}

/* cfg: "RECORDER_PID SAMPLE CTL_PATH" (SAMPLE: the --heap-sample mean, 0
 * for every allocation). The recorder's end of a new channel, or
 * -EBUSY (a live recorder is attached, or the program runs under a
 * launched kiln record --heap), -errno. */
EXPORT int kiln_attach_prepare(const char *cfg)
{
	t_guard++;
	int rc;
	if (g_state > 0 && !g_recorder_gone && recorder_alive()) {
		rc = -EBUSY;
		goto out;
	}
	char *end;
	long rec = strtol(cfg, &end, 10);
	unsigned long long sample = *end == ' ' ? strtoull(end + 1, &end, 10) : 0;
	if (rec <= 0 || *end != ' ' || strlen(end + 1) >= sizeof(kiln_ctl)) {
		rc = -EINVAL;
		goto out;
	}
	real_from_default();
	if (!real_malloc || !real_free || !real_realloc || !real_calloc || !real_dlopen || !real_dlclose) {
		rc = -ENOENT;
		goto out;
	}
	if (!g_ringrefs) {
		void *m = mmap(NULL, sizeof(*g_ringrefs) * ATTACH_RINGS, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (m == MAP_FAILED) {
			rc = -ENOMEM;
			goto out;
		}
		g_ringrefs = m;
	}
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		rc = -errno;
		goto out;
	}
	struct stat st;
	fstat(sv[0], &st);
	if (g_attached && sock_is_ours())
		close(g_sock); /* an earlier attach's (never a number the program reuses) */
	g_sock_ino = st.st_ino;
	__atomic_store_n(&g_sock, sv[0], __ATOMIC_RELEASE);
	g_recorder = (pid_t)rec;
	g_recorder_gone = 0;
	memcpy(kiln_ctl, end + 1, strlen(end + 1) + 1);
	channel_set_path(kiln_ctl); /* where the channel is made again if the program closes it */
	g_attach_sample = sample;
	rc = sv[1];
out:
	t_guard--;
	return rc;
}

/* Start recording and patch every module's slots. fd: the recorder's end,
 * which kiln has taken a copy of. The count of slots patched, or -errno. */
EXPORT int kiln_attach_start(int fd)
{
	t_guard++;
	if (fd >= 0)
		close(fd);
	process_setup();
	new_image();
	seq_attach();
	g_py_fin_sent = 0;
	if (!shim_sample__start(g_attach_sample)) {
		t_guard--;
		return -ENOMEM;
	}
	__atomic_add_fetch(&g_attach_gen, 1, __ATOMIC_SEQ_CST);
	__atomic_store_n(&g_nringrefs, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&g_attached, 1, __ATOMIC_SEQ_CST);
	__atomic_store_n(&g_state, 1, __ATOMIC_SEQ_CST);
	int rc = got__patch(attach_hooks, attach_nhooks, (void *)&kiln_attach_start);
	if (rc > 0 && shim_sample_mean)
		thread_state(); /* as at a launch: the recorder sees the process now */
	if (rc <= 0) {
		__atomic_store_n(&g_state, -1, __ATOMIC_SEQ_CST);
		got__restore();
		rc = rc < 0 ? rc : -ENOENT;
	}
	t_guard--;
	return rc;
}

/* Stop recording: slots back, wait (a bounded time) for threads inside the
 * shim, unmap every ring, close the channel. 0, or 1 when some thread was
 * still inside after the wait (its rings are left mapped). */
static int detach(bool wait_threads)
{
	__atomic_store_n(&g_state, -1, __ATOMIC_SEQ_CST);
	got__restore();
	int mine = t_guard > 1 ? 1 : 0; /* this thread's own visit, if it is inside */
	int rc = 0;
	/* 200 ms by the clock, not by a count of naps: beside a busy program
	 * each 100 us nap lasts a time slice (2,000 of them held a thread of
	 * 8-thread cxx_churn stopped 1.4 s on 2 cores) */
	uint64_t until = mono_ns() + 200000000ull;
	while (__atomic_load_n(&g_inflight, __ATOMIC_SEQ_CST) > mine) {
		if (!wait_threads || mono_ns() > until) {
			rc = 1;
			break;
		}
		struct timespec ts = {0, 100000};
		nanosleep(&ts, NULL);
	}
	if (!rc) {
		/* no other thread inside: every ring goes, but this thread's own
		 * when it was itself inside the shim (it returns to its ring, and
		 * unmaps it on its way out: attach_leave) */
		void *own = mine ? t_state.hdr : NULL;
		uint32_t n = __atomic_load_n(&g_nringrefs, __ATOMIC_ACQUIRE);
		for (uint32_t i = 0; g_ringrefs && i < n && i < ATTACH_RINGS; i++) {
			void *h = __atomic_load_n(&g_ringrefs[i].hdr, __ATOMIC_ACQUIRE);
			if (!h || h == own)
				continue;
			h = __atomic_exchange_n(&g_ringrefs[i].hdr, NULL, __ATOMIC_ACQ_REL);
			if (!h)
				continue;
			__atomic_store_n(&((struct kiln_ring_hdr *)h)->closed, 1, __ATOMIC_RELEASE);
			munmap(h, g_ringrefs[i].size);
		}
	}
	if (mine)
		rc = 1;
	__atomic_add_fetch(&g_attach_gen, 1, __ATOMIC_SEQ_CST); /* no thread writes its old ring again */
	__atomic_store_n(&g_ring_bytes, 0, __ATOMIC_RELAXED);
	channel_set_path(NULL);
	if (sock_is_ours())
		close(g_sock); /* the program may have closed it, and its number be the program's now */
	__atomic_store_n(&g_sock, -1, __ATOMIC_RELEASE);
	seq_detach(); /* after the socket: no ring made now is sent with the page */
	kiln_ctl[0] = 0;
	return rc;
}

EXPORT int kiln_detach(void)
{
	t_guard++;
	int rc = g_attached ? detach(true) : 0;
	t_guard--;
	return rc;
}

/* The recorder went away without detaching (killed): put the program's
 * slots back, so it runs on exactly as before. Called from inside record(). */
void attach_lost_recorder(void)
{
	if (__atomic_load_n(&g_attached, __ATOMIC_ACQUIRE))
		detach(false);
}
