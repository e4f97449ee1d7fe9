/* How a process image numbers its events (include/kiln/ring.h, seq_begin in
 * shim_int.h): the owner's plain count while one thread has a ring; then,
 * from the second thread's first ring on, time stamps (no write shared
 * between threads), or one atomic counter where stamps cannot be had.
 *
 * Stamps need three things, checked once per image: an invariant time stamp
 * counter (the same rate on every core, never stopped: CPUID 0x80000007
 * EDX bit 8), a process-wide barrier the recorder can ask for
 * (MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED), and the image page the recorder
 * reads (a sealed memfd). KILN_SEQ=stamps or KILN_SEQ=counter in the
 * program's environment chooses (tests run both); else stamps_possible. */
#include <fcntl.h>
#include <linux/membarrier.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif
#include "kiln/kiln.h"
#include "shim/shim_int.h"

uint64_t g_seq;            /* per process image (seq_begin) */
int g_seq_mode = SEQ_COUNTER; /* until an image knows it can do better */
int g_seq_owner_busy;
static pid_t g_seq_owner;  /* the thread that takes seqs alone, 0: none yet */
uint64_t g_stamp_offset;
struct kiln_image_page *g_page;
int g_page_fd = -1;
static ino_t g_page_ino; /* the program may close g_page_fd, and its number be its own then */
static int g_stamps_ok = -1; /* per process: -1 not yet asked */
/* Ring ids, the page's pointer and counts change under this lock (held for
 * a few instructions; a forked child starts with it free). */
static int g_ring_lock;
static uint64_t g_rings_failed; /* rings not sent before the page was made */

static void ring_lock(void)
{
	while (__atomic_exchange_n(&g_ring_lock, 1, __ATOMIC_ACQUIRE)) {
		struct timespec ts = {0, 20000};
		nanosleep(&ts, NULL);
	}
}

static void ring_unlock(void)
{
	__atomic_store_n(&g_ring_lock, 0, __ATOMIC_RELEASE);
}

/* The lock where the thread taking it may be the one a kiln injection runs
 * on, stopped while it held it (attach, detach): a bounded try. */
static bool ring_trylock(void)
{
	for (int i = 0; __atomic_exchange_n(&g_ring_lock, 1, __ATOMIC_ACQUIRE); i++)
		if (i >= 1000)
			return false;
	return true;
}

uint64_t seq_ring_id(struct kiln_image_page **page)
{
	ring_lock();
	uint64_t id = ++g_ring_ids;
	if (g_page)
		__atomic_store_n(&g_page->made, id, __ATOMIC_RELEASE);
	*page = g_page;
	ring_unlock();
	return id;
}

void seq_ring_failed(void)
{
	ring_lock();
	if (g_page)
		__atomic_add_fetch(&g_page->failed, 1, __ATOMIC_RELEASE);
	else
		g_rings_failed++;
	ring_unlock();
}

/* Whether this process stamps. Where it can, it does on machines of four
 * CPUs and more: there every thread writing one counter makes its cache
 * line travel between many cores, and each event waits for it. On two, the
 * line's trips cost less than rdtscp's wait (mt_alloc, 2 threads: 0.72 s
 * with the counter, 0.81 s stamped), so the counter stays. */
static bool stamps_possible(void)
{
	if (g_stamps_ok >= 0)
		return g_stamps_ok;
	bool ok = false;
#if defined(__x86_64__)
	unsigned a, b, c, d;
	const char *env = getenv("KILN_SEQ");
	bool want = env && !strcmp(env, "stamps") ? true
		    : env && !strcmp(env, "counter") ? false
		    : sysconf(_SC_NPROCESSORS_ONLN) >= 4;
	ok = want && __get_cpuid(0x80000007, &a, &b, &c, &d) && (d & (1u << 8));
#endif
	g_stamps_ok = ok;
	return ok;
}

/* The image page, made and filled before any ring is sent with it. */
static bool page_make(void)
{
	/* registration is per process (a forked child's is its own) */
	if (syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) != 0)
		return false;
	int fd;
	struct kiln_image_page *p = shared_make("kiln-page", KILN_PAGE_SIZE, &fd); /* a forked child makes its own */
	if (!p)
		return false;
	p->version = KILN_RING_VERSION;
	p->nonce = g_nonce;
	p->base = __atomic_load_n(&g_seq, __ATOMIC_RELAXED); /* the next seq the owner would take */
	p->tsc0 = tsc_read();
	g_stamp_offset = p->base - p->tsc0; /* seq = tsc + offset (mod 2^64) */
	__atomic_store_n(&p->magic, KILN_PAGE_MAGIC, __ATOMIC_RELEASE);
	/* every ring of the image counts, those made before too: one may
	 * still be on its way to the recorder */
	if (!ring_trylock()) {
		munmap(p, KILN_PAGE_SIZE);
		close(fd);
		return false;
	}
	p->made = g_ring_ids;
	p->failed = g_rings_failed;
	struct stat st;
	g_page_ino = fstat(fd, &st) == 0 ? st.st_ino : 0;
	g_page = p;
	g_page_fd = fd;
	ring_unlock();
	return true;
}

int seq_page_fd(void)
{
	struct stat st;
	int fd = g_page_fd;
	return fd >= 0 && fstat(fd, &st) == 0 && st.st_ino == g_page_ino && g_page_ino ? fd : -1;
}

static void page_drop(void)
{
	if (g_page) {
		munmap(g_page, KILN_PAGE_SIZE); /* nothing there in a forked child (MADV_DONTFORK) */
		g_page = NULL;
	}
	if (seq_page_fd() >= 0)
		close(g_page_fd); /* never a number the program took after closing ours */
	g_page_fd = -1;
}

void seq_detach(void)
{
	/* the page is read and written only under the lock (seq_ring_id,
	 * seq_ring_failed look at g_page again), so it can go even while a
	 * thread is inside the shim; unless the lock is held by the thread
	 * running this, stopped inside ring_make: then the page stays */
	if (!ring_trylock())
		return;
	page_drop();
	ring_unlock();
}

void seq_new_image(void)
{
	__atomic_store_n(&g_seq, 0, __ATOMIC_RELAXED);
	page_drop();
	g_ring_lock = 0; /* a forked child: no other thread holds it */
	g_rings_failed = 0;
	/* one thread may number events alone only if a second can later make
	 * it pass a barrier: registered for this image (a forked child's
	 * process is new), else the counter from the start */
	g_seq_owner = 0;
	__atomic_store_n(&g_seq_owner_busy, 0, __ATOMIC_RELAXED);
	bool mb = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
	__atomic_store_n(&g_seq_mode, mb ? SEQ_OWNER : SEQ_COUNTER, __ATOMIC_RELEASE);
}

void seq_attach(void)
{
	/* threads of a running program allocate from the first patched slot
	 * on, none of them first: no owner */
	bool st = stamps_possible() && page_make();
	__atomic_store_n(&g_seq_mode, st ? SEQ_STAMPS : SEQ_COUNTER, __ATOMIC_SEQ_CST);
}

static void wait_switched(void)
{
	while (__atomic_load_n(&g_seq_mode, __ATOMIC_ACQUIRE) == SEQ_SWITCHING) {
		struct timespec ts = {0, 20000};
		nanosleep(&ts, NULL);
	}
}

void seq_claim(struct tstate *t)
{
	int m = __atomic_load_n(&g_seq_mode, __ATOMIC_ACQUIRE);
	if (t->seq_owner || m == SEQ_COUNTER || m == SEQ_STAMPS)
		return;
	if (m == SEQ_OWNER) {
		pid_t me = gettid_raw(), none = 0;
		if (__atomic_compare_exchange_n(&g_seq_owner, &none, me, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE) ||
		    none == me) { /* the first; or a thread reusing the owner's tid, which has ended */
			t->seq_owner = true;
			return;
		}
		int owner = SEQ_OWNER;
		if (__atomic_compare_exchange_n(&g_seq_mode, &owner, SEQ_SWITCHING, false, __ATOMIC_SEQ_CST,
						__ATOMIC_ACQUIRE)) {
			/* the second thread: wait for the owner to be out of its
			 * window (it saw the owner mode and may be storing the
			 * counter), then stamps from above its last seq */
			if (syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0) {
				/* registered at seq_new_image, so this does not fail; if
				 * it did, the owner's barrier comes from being
				 * scheduled out: give it time */
				struct timespec ms = {0, 2000000};
				nanosleep(&ms, NULL);
			}
			while (__atomic_load_n(&g_seq_owner_busy, __ATOMIC_ACQUIRE)) {
				struct timespec ts = {0, 20000};
				nanosleep(&ts, NULL);
			}
			bool st = stamps_possible() && page_make();
			__atomic_store_n(&g_seq_mode, st ? SEQ_STAMPS : SEQ_COUNTER, __ATOMIC_SEQ_CST);
			return;
		}
	}
	wait_switched(); /* another thread is switching */
}

uint64_t seq_shared_slow(struct tstate *t)
{
	wait_switched(); /* then stamps or the counter: seq_begin's own paths */
	return seq_begin(t);
}
