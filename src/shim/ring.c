/* A thread's ring (include/kiln/ring.h): a sealed memfd handed to the
 * recorder, made at the thread's first event, grown while the process's
 * rings stay in budget, waited on when full (dropping, counted, only once
 * the recorder made no progress for KILN_RING_WAIT_NS), retired at thread
 * end; and the thread's caches made beside it. */
#include <fcntl.h>
#include <sys/mman.h>
#include "kiln/kiln.h"
#include "shim/shim_int.h"

TLS struct tstate t_state;


static inline uint64_t ring_size(uint64_t words)
{
	return KILN_RING_HDR_SIZE + 8 * words;
}

void *shared_make(const char *name, size_t size, int *fd)
{
	*fd = (int)syscall(SYS_memfd_create, name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (*fd < 0)
		return NULL;
	void *m = MAP_FAILED;
	if (ftruncate(*fd, (off_t)size) == 0 && fcntl(*fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == 0)
		m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
	if (m == MAP_FAILED) {
		close(*fd);
		*fd = -1;
		return NULL;
	}
	madvise(m, size, MADV_DONTFORK); /* a forked child maps none of ours */
	return m;
}

/* Make a ring of words words for this thread (continuing prev_id, or a new
 * thread chain when 0) and hand it to the recorder. */
static bool ring_make(struct tstate *t, uint64_t words, uint64_t prev_id)
{
	seq_claim(t); /* before this thread's first event */
	size_t size = ring_size(words);
	int fd;
	void *m = shared_make("kiln-ring", size, &fd);
	if (!m)
		return false;
	struct kiln_ring_hdr *h = m;
	h->version = KILN_RING_VERSION;
	h->hdr_size = KILN_RING_HDR_SIZE;
	h->pid = (uint32_t)g_pid;
	h->tid = (uint32_t)gettid_raw();
	h->ppid = (uint32_t)getppid();
	h->nonce = g_nonce;
	h->words = words;
	struct kiln_image_page *page;
	h->ring_id = seq_ring_id(&page); /* stamps: the page counts it before it is sent */
	h->prev_id = prev_id;
	h->unsent = __atomic_exchange_n(&g_loss_unsent, 0, __ATOMIC_ACQ_REL);
	__atomic_store_n(&h->magic, KILN_RING_MAGIC, __ATOMIC_RELEASE);
	/* stamps: the recorder holds its watermark until it has every ring
	 * the page counts */
	bool sent = channel_send2(KILN_MSG_RING, 0, 0, fd, page ? seq_page_fd() : -1);
	close(fd);
	if (!sent) {
		seq_ring_failed();
		if (h->unsent)
			__atomic_add_fetch(&g_loss_unsent, h->unsent, __ATOMIC_RELAXED);
		munmap(m, size);
		return false;
	}
	__atomic_add_fetch(&g_ring_bytes, size, __ATOMIC_RELAXED);
	if (g_attached && g_ringrefs) {
		uint32_t i = __atomic_fetch_add(&g_nringrefs, 1, __ATOMIC_ACQ_REL);
		if (i < ATTACH_RINGS) {
			g_ringrefs[i].size = size;
			__atomic_store_n(&g_ringrefs[i].hdr, m, __ATOMIC_RELEASE);
		}
	}
	t->agen = g_attach_gen;
	if (!prev_id)
		t->last_stamp = 0; /* stamps rise within a chain of rings */
	t->hdr = h;
	t->data = (uint64_t *)((char *)m + KILN_RING_HDR_SIZE);
	t->mask = words - 1;
	t->head = t->tail = 0;
	t->ring_bytes = size;
	return true;
}

/* Take hdr out of the attached shim's list of rings: false when it is not
 * there (detaching unmapped it). */
static bool ring_unref(void *hdr)
{
	uint32_t n = __atomic_load_n(&g_nringrefs, __ATOMIC_ACQUIRE);
	for (uint32_t i = 0; g_ringrefs && i < n && i < ATTACH_RINGS; i++) {
		void *expect = hdr;
		if (__atomic_compare_exchange_n(&g_ringrefs[i].hdr, &expect, NULL, false, __ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE))
			return true;
	}
	return false;
}

/* Forget this thread's ring without touching it (detaching unmapped it). */
static void ring_forget(struct tstate *t)
{
	t->hdr = NULL;
	t->data = NULL;
	t->ring_bytes = 0;
}

/* Detached while this thread was inside the shim, or since: its ring, if
 * detaching left it mapped (it could not know the thread was done with
 * it), is unmapped here; ring_unref makes sure only one of the two does. */
void attach_left_detached(void)
{
	struct tstate *t = &t_state;
	if (!t->hdr)
		return;
	if (t->agen != __atomic_load_n(&g_attach_gen, __ATOMIC_ACQUIRE) && ring_unref(t->hdr)) {
		__atomic_store_n(&t->hdr->closed, 1, __ATOMIC_RELEASE);
		munmap(t->hdr, t->ring_bytes);
	}
	ring_forget(t);
}

/* Let go of this thread's ring: no more events in it. */
static void ring_retire(struct tstate *t)
{
	if (!t->hdr)
		return;
	if (t->agen != __atomic_load_n(&g_attach_gen, __ATOMIC_ACQUIRE)) {
		ring_forget(t); /* an earlier attach's ring */
		return;
	}
	loss_carry(t->hdr);
	__atomic_store_n(&t->hdr->closed, 1, __ATOMIC_RELEASE);
	if (g_attached && !ring_unref(t->hdr)) {
		ring_forget(t);
		return;
	}
	munmap(t->hdr, t->ring_bytes);
	__atomic_sub_fetch(&g_ring_bytes, t->ring_bytes, __ATOMIC_RELAXED);
	t->hdr = NULL;
	t->data = NULL;
	t->ring_bytes = 0;
}

/* A busy thread continues in a ring twice as large, while the process's
 * rings stay within the budget. */
static bool ring_grow(struct tstate *t)
{
	uint64_t words = (t->mask + 1) * 2;
	if (words > KILN_RING_WORDS_MAX ||
	    __atomic_load_n(&g_ring_bytes, __ATOMIC_RELAXED) + ring_size(words) > KILN_RING_PROC_BUDGET)
		return false;
	struct tstate old = *t;
	if (!ring_make(t, words, old.hdr->ring_id)) {
		*t = old;
		return false;
	}
	ring_retire(&old);
	return true;
}

/* Count events this thread could not record. */
void count_dropped(struct tstate *t, uint64_t events)
{
	if (g_attached && __atomic_load_n(&g_state, __ATOMIC_ACQUIRE) < 0)
		return; /* an event racing a detach comes after it: not recorded, not lost */
	if (t->hdr)
		__atomic_store_n(&t->hdr->dropped, t->hdr->dropped + events, __ATOMIC_RELEASE);
}

void thread_end(void *arg)
{
	struct tstate *t = &t_state;
	t_guard++;
	if (t->noring && g_state > 0)
		loss_send_noring(t->noring);
	t->noring = 0;
	ring_retire(t);
	thread_caches_free(t);
	if (t->pycodes) {
		munmap(t->pycodes, sizeof(uint64_t) * PYCODE_SET);
		t->pycodes = NULL;
	}
	t->destructs++;
	t_guard--;
}

/* Room for n words. A full ring grows; past the budget the thread waits for
 * the recorder; once it drained nothing for KILN_RING_WAIT_NS, drops (the caller counts)
 * until the recorder catches up. False when nothing may be written. */
bool ring_reserve_slow(struct tstate *t, uint64_t n)
{
	t->tail = __atomic_load_n(&t->hdr->tail, __ATOMIC_ACQUIRE);
	if (ring_has_room(t, n)) {
		t->dropping = false;
		return true;
	}
	if (unlikely(__atomic_load_n(&t->hdr->rflags, __ATOMIC_ACQUIRE) & RING_R_CORRUPT)) {
		t->stopped = true;
		return false;
	}
	if (t->dropping)
		return false;
	if (ring_grow(t))
		return true;
	/* the wait counts from the recorder's last progress on this process's
	 * rings: a recorder that drains slowly (a loaded machine), or drains
	 * the other threads' rings first (seq order), is waited for */
	uint64_t start = mono_ns(), seen = t->tail, beat = __atomic_load_n(&t->hdr->beat, __ATOMIC_ACQUIRE);
	for (unsigned spins = 1;; spins++) {
		struct timespec ts = {0, spins < 64 ? 20000 : 200000};
		nanosleep(&ts, NULL);
		t->tail = __atomic_load_n(&t->hdr->tail, __ATOMIC_ACQUIRE);
		if (ring_has_room(t, n))
			return true;
		if (spins % 64 == 0 && !recorder_alive())
			return false;
		/* detaching: the recorder, busy with the detach call, drains
		 * nothing until it ends, and the call waits for this thread to
		 * leave the shim */
		if (g_attached && __atomic_load_n(&g_state, __ATOMIC_ACQUIRE) < 0)
			return false;
		uint64_t now = mono_ns(), b = __atomic_load_n(&t->hdr->beat, __ATOMIC_ACQUIRE);
		if (t->tail != seen || b != beat) { /* the recorder drains, if slowly */
			seen = t->tail;
			beat = b;
			start = now;
		}
		if (now - start > KILN_RING_WAIT_NS) {
			t->dropping = true;
			return false;
		}
	}
}

struct tstate *thread_state_slow(void)
{
	/* After fork only the forking thread lives on, and atfork_child has
	 * reset it; threads created later start from zeroed TLS. */
	struct tstate *t = &t_state;
	if (unlikely(t->hdr && t->agen != g_attach_gen)) {
		ring_forget(t); /* a ring of an earlier attach */
		t->stopped = t->dropping = false;
	}
	if (unlikely(!t->hdr)) {
		if (t->destructs > 3 || t->stopped)
			return NULL;
		if (t->noring && t->noring % 4096)
			goto lost; /* retry making a ring now and then, not on every call */
		uint64_t words = __atomic_load_n(&g_ring_bytes, __ATOMIC_RELAXED) > KILN_RING_PROC_BUDGET / 2
					 ? KILN_RING_WORDS_TINY
					 : KILN_RING_WORDS_MIN;
		if (!ring_make(t, words, 0)) {
			if (!recorder_alive())
				return NULL;
			if (!t->noring) {
				channel_send(KILN_MSG_LOSS, HL_NO_RING, 0, -1); /* say so early */
				if (g_key_ok) /* thread_end tells the count */
					pthread_setspecific(g_key, t);
			}
			goto lost;
		}
		if (t->noring)
			loss_send_noring(t->noring);
		t->noring = 0;
		stack_cache_reset(t);
		if (g_key_ok)
			pthread_setspecific(g_key, t);
	}
	if (unlikely(!t->slots && t->destructs == 0))
		thread_caches(t);
	return t;
lost:
	t->noring++;
	return NULL;
}
