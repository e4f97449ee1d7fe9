/* The shim's process-wide part: set up once per process (launched: at the
 * first call or the constructor; attached: by attach.c), a new image at
 * each fork and exec, the fork handlers, the channel to the recorder (an
 * inherited socket, or the recorder's named one), the losses no ring can
 * carry, and what the process tells as it exits. */
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <signal.h>
#include <stdlib.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include "kiln/kiln.h"
#include "shim/env.h"
#include "shim/shim_int.h"

/* ---- process-wide state ---- */
int g_state;            /* 0 unknown, 1 recording, -1 off */
int g_sock = -1;        /* the channel to the recorder (ring.h) */
ino_t g_sock_ino;       /* its inode: the number may be reused if the program closes it */
pid_t g_pid, g_recorder;
uint64_t g_nonce;
uint64_t g_ring_ids;    /* ring ids of this image */
uint64_t g_ring_bytes;  /* bytes of rings this process holds */
uintptr_t g_self_lo, g_self_hi; /* our own text, skipped in stacks */
pthread_key_t g_key;
bool g_key_ok;
volatile int g_recorder_gone;
bool g_nofollow;        /* --no-follow: forked children record nothing */
/* Attached to a running program (kiln record --heap -p): the shim came by
 * dlopen and its hooks are GOT slots (shim/got.h). Each attach is a
 * generation: a thread's ring from an earlier one is not written again. */
int g_attached;
uint32_t g_attach_gen;
uint64_t g_attach_sample; /* the next attach's --heap-sample mean */
int g_inflight;         /* threads inside record() while attached */
/* The recorder's snapshot socket while attached, for `kiln snapshot PID`
 * (which reads it here: an attached program's environment cannot say it). */
EXPORT char kiln_ctl[256];
struct ring_ref *g_ringrefs;
uint32_t g_nringrefs;

static int self_phdr_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	uintptr_t me = (uintptr_t)arg;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
			continue;
		uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
		if (me >= lo && me < hi) {
			g_self_lo = lo;
			g_self_hi = hi;
			return 1;
		}
	}
	return 0;
}

uint32_t g_image_gen; /* bumped with each new image: what threads sent before is unknown to its recorder */

void new_image(void)
{
	__atomic_add_fetch(&g_image_gen, 1, __ATOMIC_RELAXED);
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	g_pid = getpid();
	g_nonce = ((uint64_t)g_pid << 32) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uintptr_t)&ts;
	seq_new_image();
	__atomic_store_n(&g_ring_ids, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&g_ring_bytes, 0, __ATOMIC_RELAXED);
}

static void atfork_prepare(void)
{
	/* the child inherits this thread's caches: make them here, once,
	 * rather than in every child (where glibc reads /proc/self/maps for
	 * the main thread's stack) */
	struct tstate *t = &t_state;
	if (g_state > 0 && !t_guard && !t->slots && t->destructs == 0) {
		t_guard++;
		thread_caches(t);
		t_guard--;
	}
	t_guard++;
}

static void atfork_parent(void)
{
	t_guard--;
}

/* Events lost for want of a ring whose KILN_MSG_LOSS could not be sent
 * either (the recorder did not read its socket in time): the next ring this
 * process makes, or a ring about to close, carries the count in its header
 * (hdr->unsent), so no loss goes uncounted. */
uint64_t g_loss_unsent;
static int g_connecting; /* a thread is making the channel again (channel_ours) */

static void atfork_child(void)
{
	t_guard--;
	if (g_nofollow) {
		/* not followed: this child records nothing */
		__atomic_store_n(&g_state, -1, __ATOMIC_RELEASE);
		return;
	}
	struct tstate *t = &t_state;
	t->seq_owner = false; /* new_image: the child's first ring claims */
	t->hdr = NULL; /* the parent's ring: not mapped here */
	t->data = NULL;
	t->ring_bytes = 0;
	t->dropping = t->stopped = false;
	t->noring = 0;
	g_loss_unsent = 0; /* the parent's to tell */
	g_connecting = 0; /* another thread of the parent may have been making the channel again */
	stack_cache_reset(t);
	new_image();
	g_py_fin_sent = 0;
}

/* The shim's own path, as LD_PRELOAD names it (NULL if unknown). */
static const char *self_path(void)
{
	Dl_info info;
	return dladdr((void *)&self_path, &info) && info.dli_fname ? info.dli_fname : NULL;
}

/* Launched (not attached): kiln's variables out of the program's sight
 * (shim/env.h); with --no-follow, children and exec'd programs do not get
 * them back, nor a program it execs the channel. */
static void env_setup(bool follow)
{
	if (!getenv("KILN_FD") && !getenv("KILN_SOCK"))
		return; /* attached: the environment holds nothing of ours */
	shim_env__hide(self_path(), follow);
	if (!follow && g_sock >= 0)
		fcntl(g_sock, F_SETFD, FD_CLOEXEC);
}

bool sock_is_ours(void)
{
	struct stat st;
	int fd = __atomic_load_n(&g_sock, __ATOMIC_ACQUIRE);
	return fd >= 0 && fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_ino == g_sock_ino;
}

/* The recorder's named socket ($KILN_SOCK, or the attach's control path):
 * where the channel is made again when the program closes kiln's descriptor
 * (a daemon's closefrom(3) at its start); "" when there is none. */
static char g_sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];

void channel_set_path(const char *path)
{
	if (path && strlen(path) < sizeof(g_sock_path))
		memcpy(g_sock_path, path, strlen(path) + 1);
	else
		g_sock_path[0] = 0;
}

static bool sock_connect(void)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (!g_sock_path[0])
		return false;
	memcpy(a.sun_path, g_sock_path, sizeof(a.sun_path));
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	struct stat st;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || fstat(fd, &st) < 0) {
		close(fd);
		return false;
	}
	g_sock_ino = st.st_ino;
	__atomic_store_n(&g_sock, fd, __ATOMIC_RELEASE);
	return true;
}

/* The channel is usable: still ours, or made again (one thread at a time;
 * the descriptor the program closed is never touched: its number may be the
 * program's own now). */
bool channel_ours(void)
{
	if (sock_is_ours())
		return true;
	if (!g_sock_path[0] || g_state < 0)
		return false;
	while (__atomic_exchange_n(&g_connecting, 1, __ATOMIC_ACQUIRE)) {
		struct timespec ts = {0, 50000};
		nanosleep(&ts, NULL);
	}
	bool ok = sock_is_ours() || sock_connect();
	__atomic_store_n(&g_connecting, 0, __ATOMIC_RELEASE);
	return ok;
}

/* The channel: the inherited socket named by $KILN_FD ("FD:INODE"), or, if
 * the program closed it, a new connection to $KILN_SOCK. */
static bool channel_open(void)
{
	channel_set_path(getenv("KILN_SOCK"));
	const char *fdv = getenv("KILN_FD");
	if (fdv && *fdv) {
		char *end;
		long fd = strtol(fdv, &end, 10);
		if (*end == ':' && fd >= 0 && fd < 1 << 20) {
			g_sock = (int)fd;
			g_sock_ino = (ino_t)strtoull(end + 1, NULL, 10);
			if (sock_is_ours())
				return true;
		}
	}
	g_sock = -1;
	return sock_connect();
}

/* What a recording process sets up once, launched or attached: its own text
 * (skipped in stacks), the unwinder's caching, the thread-end key, the fork
 * handlers, whether it runs a CPython. */
void process_setup(void)
{
	static bool done;
	if (done)
		return;
	done = true;
	dl_iterate_phdr(self_phdr_cb, (void *)(uintptr_t)&process_setup);
	unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
	g_key_ok = pthread_key_create(&g_key, thread_end) == 0;
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
	python_init();
}

void init_once(void)
{
	int expected = 0;
	if (g_state != 0)
		return;
	t_guard++;
	if (!real_malloc)
		resolve_real();
	const char *rec = getenv("KILN_RECORDER_PID");
	int st = -1;
	const char *smp = getenv("KILN_HEAP_SAMPLE");
	if (real_malloc && real_free && shim_sample__start(smp ? strtoull(smp, NULL, 10) : 0) && channel_open()) {
		g_recorder = rec ? (pid_t)atoi(rec) : 0;
		new_image();
		process_setup();
		if (getenv("KILN_NO_FOLLOW"))
			g_nofollow = true;
		st = 1;
	}
	env_setup(!g_nofollow);
	__atomic_compare_exchange_n(&g_state, &expected, st, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
	/* sampled: the first event may be far off, and the recorder learns of
	 * the process (and reads its maps) from its first ring: make it now */
	if (st > 0 && shim_sample_mean)
		thread_state();
	t_guard--;
}

__attribute__((constructor)) static void shim_ctor(void)
{
	init_once();
}

uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}


bool recorder_alive(void)
{
	if (g_recorder_gone)
		return false;
	/* the channel's hang-up says the recorder is gone, but only while the
	 * descriptor is still ours: a program that closed it (or whose own file
	 * now has its number) has not lost its recorder; the recorder's pid
	 * tells then, or a channel made again */
	bool ours = sock_is_ours();
	struct pollfd p = {g_sock, 0, 0};
	bool hup = ours && poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR | POLLNVAL));
	if (!ours && g_recorder <= 0)
		hup = !channel_ours();
	if (hup || (g_recorder > 0 && kill(g_recorder, 0) < 0 && errno == ESRCH)) {
		g_recorder_gone = 1;
		__atomic_store_n(&g_state, -1, __ATOMIC_RELEASE);
		attach_lost_recorder();
		return false;
	}
	return true;
}

/* Send one message (with a descriptor, or -1; and a second, or -1). The
 * recorder may be slow to read (or stopped): retry for at most
 * KILN_RING_WAIT_NS. */
bool channel_send2(uint16_t type, uint64_t cause, uint64_t count, int fd, int fd2)
{
	if (!channel_ours())
		return false;
	struct kiln_msg m = {.magic = KILN_MSG_MAGIC, .type = type, .version = KILN_RING_VERSION,
			     .pid = (uint32_t)g_pid, .tid = (uint32_t)gettid_raw(), .cause = cause, .count = count};
	struct iovec iov = {&m, sizeof(m)};
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	if (fd >= 0) {
		int fds[2] = {fd, fd2}, nfd = fd2 >= 0 ? 2 : 1;
		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.buf;
		mh.msg_controllen = CMSG_SPACE(nfd * sizeof(int));
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(nfd * sizeof(int));
		memcpy(CMSG_DATA(c), fds, nfd * sizeof(int));
	}
	uint64_t start = 0;
	for (unsigned spins = 0;; spins++) {
		if (sendmsg(g_sock, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)sizeof(m))
			return true;
		if (errno != EAGAIN && errno != EINTR && errno != ETOOMANYREFS && errno != ENOBUFS)
			return false;
		uint64_t now = mono_ns();
		if (!start)
			start = now;
		if (now - start > KILN_RING_WAIT_NS || (spins % 16 == 15 && !recorder_alive()))
			return false;
		struct timespec ts = {0, 200000};
		nanosleep(&ts, NULL);
	}
}

void loss_send_noring(uint64_t n)
{
	if (!channel_send(KILN_MSG_LOSS, HL_NO_RING, n, -1) && n)
		__atomic_add_fetch(&g_loss_unsent, n, __ATOMIC_RELAXED);
}

void loss_carry(struct kiln_ring_hdr *h)
{
	uint64_t n = __atomic_exchange_n(&g_loss_unsent, 0, __ATOMIC_ACQ_REL);
	if (n)
		__atomic_add_fetch(&h->unsent, n, __ATOMIC_RELEASE);
}

/* While attached, a look at the recorder at most every 100 ms (asked
 * every 4096 events of a thread): a killed kiln is noticed within a moment
 * of activity and the program's slots are put back. */
static uint64_t g_alive_checked;

bool recorder_seen_lately(void)
{
	uint64_t now = mono_ns(), last = __atomic_load_n(&g_alive_checked, __ATOMIC_RELAXED);
	if (now - last < 100000000ull)
		return true;
	__atomic_store_n(&g_alive_checked, now, __ATOMIC_RELAXED);
	return recorder_alive();
}

/* At exit: the losses this process could not tell yet go in the exiting
 * thread's ring (read when the recorder ends the process), else in one
 * last message. */
__attribute__((destructor)) static void shim_dtor(void)
{
	if (__atomic_load_n(&g_state, __ATOMIC_ACQUIRE) <= 0)
		return;
	t_guard++;
	struct tstate *t = &t_state;
	bool att = g_attached;
	if (attach_enter(att)) {
		if (t->noring)
			__atomic_add_fetch(&g_loss_unsent, t->noring, __ATOMIC_RELAXED);
		t->noring = 0;
		if (t->hdr && t->agen == __atomic_load_n(&g_attach_gen, __ATOMIC_ACQUIRE))
			loss_carry(t->hdr);
		else if (__atomic_load_n(&g_loss_unsent, __ATOMIC_RELAXED))
			loss_send_noring(__atomic_exchange_n(&g_loss_unsent, 0, __ATOMIC_ACQ_REL));
		/* launched: a process about to end waits (at most 100 ms) until
		 * the recorder has read its maps, so its stacks can be named */
		for (int i = 0; !att && t->hdr && i < 100 &&
				!(__atomic_load_n(&t->hdr->rflags, __ATOMIC_ACQUIRE) & (RING_R_MAPS | RING_R_CORRUPT)) &&
				recorder_alive();
		     i++) {
			struct timespec ms = {0, 1000000};
			nanosleep(&ms, NULL);
		}
	}
	attach_leave(att);
	t_guard--;
}
