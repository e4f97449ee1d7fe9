/* libkiln_shim.so: the heap collector, preloaded into the profiled program.
 *
 * Hostile territory: it runs inside someone else's process, on the hot path
 * of every allocation, in signal handlers, in TLS destructors, across fork.
 * The rules it keeps:
 *   - forward the call first, record second, and never change what the
 *     caller sees (return value, errno);
 *   - a per-thread recursion guard: what libunwind or libc allocate while
 *     we record is forwarded, not recorded;
 *   - a static bootstrap pool serves dlsym's own calloc before the real
 *     functions are known;
 *   - initial-exec TLS (no allocation on first access), no stdio, no locks,
 *     nothing held across fork; symbols are never resolved here: stacks are
 *     raw return addresses, each distinct stack sent once per thread;
 *   - events go to a per-thread shared-memory ring the recorder reads, so a
 *     program killed by SIGKILL loses nothing it had published; if the
 *     recorder goes away, recording stops and the program runs on.
 * The ring format is include/kiln/ring.h. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#include "kiln/kiln.h"
#include "kiln/ring.h"
#include "shim/cfi.h"

#define EXPORT __attribute__((visibility("default")))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define TLS __thread __attribute__((tls_model("initial-exec")))

#define SHIM_DEPTH 128
#define CACHE_SLOTS 16384         /* per-thread stack cache */
#define ARENA_WORDS (1u << 20)    /* ips kept for the cache */

typedef void *(*malloc_fn)(size_t);
typedef void *(*calloc_fn)(size_t, size_t);
typedef void *(*realloc_fn)(void *, size_t);
typedef void (*free_fn)(void *);
typedef int (*posix_memalign_fn)(void **, size_t, size_t);
typedef void *(*memalign_fn)(size_t, size_t);
typedef void *(*valloc_fn)(size_t);

static malloc_fn real_malloc;
static calloc_fn real_calloc;
static realloc_fn real_realloc;
static free_fn real_free;
static posix_memalign_fn real_posix_memalign;
static memalign_fn real_aligned_alloc, real_memalign;
static valloc_fn real_valloc, real_pvalloc;

/* ---- bootstrap pool for allocations made while resolving the real functions ---- */
static char boot_pool[1 << 16] __attribute__((aligned(64)));
static size_t boot_used;

static void *boot_alloc(size_t n)
{
	size_t off = __atomic_fetch_add(&boot_used, (n + 15) & ~(size_t)15, __ATOMIC_RELAXED);
	if (off + n > sizeof(boot_pool))
		return NULL;
	return boot_pool + off;
}

static inline bool is_boot(const void *p)
{
	return (const char *)p >= boot_pool && (const char *)p < boot_pool + sizeof(boot_pool);
}

/* ---- process-wide state ---- */
static int g_state;            /* 0 unknown, 1 recording, -1 off */
static char g_dir[256];
static pid_t g_pid, g_recorder;
static uint64_t g_nonce;
static uint64_t g_seq;         /* per process image; atomically incremented */
static unsigned g_ringno;
static uintptr_t g_self_lo, g_self_hi; /* our own text, skipped in stacks */
static pthread_key_t g_key;
static bool g_key_ok;
static volatile int g_recorder_gone;
static int g_threads;          /* rings made in this image: >1 means seq must be atomic */
static bool g_nofollow;        /* --no-follow: forked children record nothing */

struct cache_slot {
	uint64_t hash;
	uint32_t id, off;
	uint32_t depth, truncated;
};

struct tstate {
	struct kiln_ring_hdr *hdr;
	uint64_t *data;
	uint64_t mask, head, tail;
	unsigned destructs;
	uint32_t next_id;
	struct cache_slot *slots; /* CACHE_SLOTS */
	uint64_t *arena;          /* ARENA_WORDS */
	uint32_t arena_used;
	struct cfi_rule *rules;   /* CFI_RULES */
	uintptr_t stack_hi;
};

static TLS int t_guard;
static TLS struct tstate t_state;

/* ---- small helpers that allocate nothing ---- */
static char *put_u64(char *p, uint64_t v)
{
	char tmp[24];
	int n = 0;
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*p++ = tmp[--n];
	return p;
}

static pid_t gettid_raw(void)
{
	return (pid_t)syscall(SYS_gettid);
}

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

static void resolve_real(void)
{
	real_malloc = (malloc_fn)dlsym(RTLD_NEXT, "malloc");
	real_calloc = (calloc_fn)dlsym(RTLD_NEXT, "calloc");
	real_realloc = (realloc_fn)dlsym(RTLD_NEXT, "realloc");
	real_free = (free_fn)dlsym(RTLD_NEXT, "free");
	real_posix_memalign = (posix_memalign_fn)dlsym(RTLD_NEXT, "posix_memalign");
	real_aligned_alloc = (memalign_fn)dlsym(RTLD_NEXT, "aligned_alloc");
	real_memalign = (memalign_fn)dlsym(RTLD_NEXT, "memalign");
	real_valloc = (valloc_fn)dlsym(RTLD_NEXT, "valloc");
	real_pvalloc = (valloc_fn)dlsym(RTLD_NEXT, "pvalloc");
}

static void thread_end(void *arg);

static void new_image(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	g_pid = getpid();
	g_nonce = ((uint64_t)g_pid << 32) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uintptr_t)&ts;
	__atomic_store_n(&g_seq, 0, __ATOMIC_RELAXED);
}

/* Forget this thread's stack ids: they belong to the ring they were sent on. */
static void stack_cache_reset(struct tstate *t)
{
	t->next_id = 0;
	t->arena_used = 0;
	if (t->slots)
		memset(t->slots, 0, sizeof(*t->slots) * CACHE_SLOTS);
}

static void atfork_child(void)
{
	if (g_nofollow) {
		/* not followed: this child records nothing */
		__atomic_store_n(&g_state, -1, __ATOMIC_RELEASE);
		return;
	}
	/* Only this thread lives on. Its ring belongs to the parent: drop our
	 * mapping of it and start a process image of our own. */
	struct tstate *t = &t_state;
	if (t->hdr)
		munmap(t->hdr, KILN_RING_HDR_SIZE + 8 * (size_t)(t->mask + 1));
	t->hdr = NULL;
	t->data = NULL;
	stack_cache_reset(t);
	g_ringno = 0;
	g_threads = 0;
	new_image();
}

/* --no-follow: children and exec'd programs run without the shim. Take our
 * own path out of LD_PRELOAD (other preloads stay) and the recorder's
 * variables out of the environment they inherit. */
static void no_follow(void)
{
	const char *pre = getenv("LD_PRELOAD");
	Dl_info info;
	if (pre && dladdr((void *)&no_follow, &info) && info.dli_fname) {
		char out[4096];
		size_t o = 0, self = strlen(info.dli_fname);
		for (const char *p = pre; *p;) {
			size_t n = strcspn(p, ": ");
			if (!(n == self && !memcmp(p, info.dli_fname, n)) && n && o + n + 1 < sizeof(out)) {
				if (o)
					out[o++] = ':';
				memcpy(out + o, p, n);
				o += n;
			}
			p += n;
			while (*p == ':' || *p == ' ')
				p++;
		}
		out[o] = 0;
		if (o)
			setenv("LD_PRELOAD", out, 1);
		else
			unsetenv("LD_PRELOAD");
	}
	unsetenv("KILN_SHM");
	unsetenv("KILN_CTL");
	unsetenv("KILN_NO_FOLLOW");
}

static void init_once(void)
{
	int expected = 0;
	if (g_state != 0)
		return;
	t_guard++;
	if (!real_malloc)
		resolve_real();
	const char *dir = getenv("KILN_SHM");
	const char *rec = getenv("KILN_RECORDER_PID");
	int st = -1;
	if (dir && *dir && strlen(dir) < sizeof(g_dir) - 1 && real_malloc && real_free) {
		memcpy(g_dir, dir, strlen(dir) + 1);
		g_recorder = rec ? (pid_t)atoi(rec) : 0;
		dl_iterate_phdr(self_phdr_cb, (void *)(uintptr_t)&init_once);
		new_image();
		unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
		g_key_ok = pthread_key_create(&g_key, thread_end) == 0;
		pthread_atfork(NULL, NULL, atfork_child);
		if (getenv("KILN_NO_FOLLOW")) {
			g_nofollow = true;
			no_follow();
		}
		st = 1;
	}
	__atomic_compare_exchange_n(&g_state, &expected, st, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
	t_guard--;
}

__attribute__((constructor)) static void shim_ctor(void)
{
	init_once();
}

static bool recorder_alive(void)
{
	if (g_recorder_gone)
		return false;
	if (g_recorder > 0 && kill(g_recorder, 0) < 0 && errno == ESRCH) {
		g_recorder_gone = 1;
		__atomic_store_n(&g_state, -1, __ATOMIC_RELEASE);
		return false;
	}
	return true;
}

static bool ring_create(struct tstate *t)
{
	char tmp[400], path[400], *p;
	unsigned k = __atomic_add_fetch(&g_ringno, 1, __ATOMIC_RELAXED);
	size_t dl = strlen(g_dir);
	memcpy(path, g_dir, dl);
	p = path + dl;
	*p++ = '/';
	p = put_u64(p, (uint64_t)g_pid);
	*p++ = '.';
	p = put_u64(p, (uint64_t)gettid_raw());
	*p++ = '.';
	p = put_u64(p, g_nonce);
	*p++ = '.';
	p = put_u64(p, k);
	memcpy(tmp, path, (size_t)(p - path));
	memcpy(tmp + (p - path), ".tmp", 5);
	memcpy(p, ".ring", 6);
	/* the first threads of a process get big rings; a pool of hundreds
	 * must not take gigabytes of /dev/shm */
	uint64_t words = k <= KILN_RING_BIG_RINGS ? KILN_RING_WORDS : KILN_RING_WORDS_SMALL;
	size_t size = KILN_RING_HDR_SIZE + 8 * (size_t)words;
	int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return false;
	/* Reserve the pages now: a full /dev/shm must fail here, not as a
	 * SIGBUS on a later write. */
	if (ftruncate(fd, (off_t)size) < 0 || posix_fallocate(fd, 0, (off_t)size) != 0) {
		close(fd);
		unlink(tmp);
		return false;
	}
	void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (m == MAP_FAILED) {
		unlink(tmp);
		return false;
	}
	struct kiln_ring_hdr *h = m;
	h->pid = (uint32_t)g_pid;
	h->tid = (uint32_t)gettid_raw();
	h->nonce = g_nonce;
	h->words = words;
	__atomic_store_n(&h->magic, KILN_RING_MAGIC, __ATOMIC_RELEASE);
	if (rename(tmp, path) < 0) {
		munmap(m, size);
		unlink(tmp);
		return false;
	}
	__atomic_add_fetch(&g_threads, 1, __ATOMIC_SEQ_CST);
	t->hdr = h;
	t->data = (uint64_t *)((char *)m + KILN_RING_HDR_SIZE);
	t->mask = words - 1;
	t->head = t->tail = 0;
	if (g_key_ok)
		pthread_setspecific(g_key, t);
	return true;
}

static void thread_end(void *arg)
{
	struct tstate *t = &t_state;
	t_guard++;
	if (t->hdr) {
		__atomic_store_n(&t->hdr->closed, 1, __ATOMIC_RELEASE);
		munmap(t->hdr, KILN_RING_HDR_SIZE + 8 * (size_t)(t->mask + 1));
		t->hdr = NULL;
	}
	if (t->slots) {
		munmap(t->slots, sizeof(*t->slots) * CACHE_SLOTS);
		munmap(t->arena, 8 * (size_t)ARENA_WORDS);
		t->slots = NULL;
		t->arena = NULL;
	}
	if (t->rules) {
		munmap(t->rules, sizeof(struct cfi_rule) * CFI_RULES);
		t->rules = NULL;
	}
	t->destructs++;
	t_guard--;
}

/* Room for n words; false when the recorder is gone (recording stops). */
static bool ring_reserve(struct tstate *t, uint64_t n)
{
	uint64_t cap = t->mask + 1;
	if (likely(cap - (t->head - t->tail) >= n))
		return true;
	t->tail = __atomic_load_n(&t->hdr->tail, __ATOMIC_ACQUIRE);
	unsigned spins = 0;
	while (cap - (t->head - t->tail) < n) {
		if (++spins % 64 == 0 && !recorder_alive())
			return false;
		struct timespec ts = {0, spins < 64 ? 20000 : 200000};
		nanosleep(&ts, NULL);
		t->tail = __atomic_load_n(&t->hdr->tail, __ATOMIC_ACQUIRE);
	}
	return true;
}

static inline void ring_put(struct tstate *t, uint64_t i, uint64_t w)
{
	t->data[(t->head + i) & t->mask] = w;
}

static inline void ring_publish(struct tstate *t, uint64_t n)
{
	t->head += n;
	__atomic_store_n(&t->hdr->head, t->head, __ATOMIC_RELEASE);
}

static struct tstate *thread_state(void)
{
	/* After fork only the forking thread lives on, and atfork_child has
	 * reset it; threads created later start from zeroed TLS. */
	struct tstate *t = &t_state;
	if (unlikely(!t->hdr)) {
		if (t->destructs > 3)
			return NULL;
		if (!ring_create(t)) {
			/* /dev/shm full or gone: stop recording rather than retry
			 * on every call (the recorder warns of missing data) */
			__atomic_store_n(&g_state, -1, __ATOMIC_RELEASE);
			return NULL;
		}
		stack_cache_reset(t);
	}
	if (unlikely(!t->slots && t->destructs == 0)) {
		void *s = mmap(NULL, sizeof(*t->slots) * CACHE_SLOTS, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		void *a = mmap(NULL, 8 * (size_t)ARENA_WORDS, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		void *rl = mmap(NULL, sizeof(struct cfi_rule) * CFI_RULES, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (s != MAP_FAILED && a != MAP_FAILED) {
			t->slots = s;
			t->arena = a;
			t->rules = rl != MAP_FAILED ? rl : NULL;
			pthread_attr_t attr;
			void *addr;
			size_t size;
			if (pthread_getattr_np(pthread_self(), &attr) == 0) {
				if (pthread_attr_getstack(&attr, &addr, &size) == 0)
					t->stack_hi = (uintptr_t)addr + size;
				pthread_attr_destroy(&attr);
			}
		} else {
			if (rl != MAP_FAILED)
				munmap(rl, sizeof(struct cfi_rule) * CFI_RULES);
			if (s != MAP_FAILED)
				munmap(s, sizeof(*t->slots) * CACHE_SLOTS);
			if (a != MAP_FAILED)
				munmap(a, 8 * (size_t)ARENA_WORDS);
		}
	}
	return t;
}

/* Where the program called into the shim: the hook's return address, the
 * caller's stack pointer and frame pointer, read from the hook's own frame
 * (the shim is built with frame pointers). */
struct walk_start {
	uintptr_t ip, sp, bp;
};
#define CALLER(ws)                                                                                             \
	struct walk_start ws;                                                                                  \
	do {                                                                                                   \
		uintptr_t *fp_ = (uintptr_t *)__builtin_frame_address(0);                                      \
		ws.bp = fp_[0];                                                                                \
		ws.ip = fp_[1];                                                                                \
		ws.sp = (uintptr_t)(fp_ + 2);                                                                  \
	} while (0)

static inline bool same_words(const uint64_t *a, const uint64_t *b, int n)
{
	uint64_t d = 0;
	for (int i = 0; i < n; i++)
		d |= a[i] ^ b[i];
	return d == 0;
}

/* The id of this thread's stack, sending its definition the first time.
 * The walk starts at the caller of the hook (ws): the shim's own frames are
 * never walked. */
static bool stack_id(struct tstate *t, const struct walk_start *ws, uint64_t *out)
{
	void *ips[SHIM_DEPTH + 8];
	int n = -1;
	if (likely(t->rules && t->stack_hi && ws))
		n = cfi_backtrace(t->rules, ws->ip, ws->sp, ws->bp, t->stack_hi, false, ips, SHIM_DEPTH + 8);
	if (n < 0)
		n = unw_backtrace(ips, SHIM_DEPTH + 8);
	int skip = 0;
	while (skip < n && (uintptr_t)ips[skip] >= g_self_lo && (uintptr_t)ips[skip] < g_self_hi)
		skip++;
	uint32_t truncated = n >= SHIM_DEPTH + 8;
	n -= skip;
	if (n > SHIM_DEPTH) {
		n = SHIM_DEPTH;
		truncated = 1;
	}
	uint64_t *s = (uint64_t *)(ips + skip);
	/* independent multiplies (they pipeline), one mix at the end: the key
	 * only picks a slot, a hit is confirmed word by word */
	uint64_t h = (uint64_t)n | ((uint64_t)truncated << 32);
	for (int i = 0; i < n; i++)
		h += (s[i] ^ (s[i] >> 29)) * (0x9e3779b97f4a7c15ULL + ((uint64_t)i << 1));
	h ^= h >> 32;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 29;
	h |= 1; /* 0 marks an empty slot */
	struct cache_slot *slot = NULL;
	if (t->slots) {
		size_t j = h & (CACHE_SLOTS - 1);
		for (int probe = 0; probe < 8; probe++, j = (j + 1) & (CACHE_SLOTS - 1)) {
			struct cache_slot *c = &t->slots[j];
			if (!c->hash) {
				slot = c;
				break;
			}
			if (c->hash == h && c->depth == (uint32_t)n && c->truncated == truncated &&
			    same_words(t->arena + c->off, s, n)) {
				*out = c->id;
				return true;
			}
		}
	}
	/* new to this thread: define it in the ring */
	if (!ring_reserve(t, (uint64_t)n + 2))
		return false;
	uint32_t id = t->next_id++;
	ring_put(t, 0, ((uint64_t)truncated << 32) | ((uint64_t)n << 8) | RING_STACK);
	ring_put(t, 1, id);
	for (int i = 0; i < n; i++)
		ring_put(t, 2 + (uint64_t)i, s[i]);
	ring_publish(t, (uint64_t)n + 2);
	if (slot && t->arena_used + (uint32_t)n <= ARENA_WORDS) {
		memcpy(t->arena + t->arena_used, s, (size_t)n * 8);
		slot->hash = h;
		slot->id = id;
		slot->off = t->arena_used;
		slot->depth = (uint32_t)n;
		slot->truncated = truncated;
		t->arena_used += (uint32_t)n;
	}
	*out = id;
	return true;
}

/* The next sequence number. While this image has one recording thread a
 * plain increment does (no other thread takes numbers); from the second
 * thread's first event on, an atomic one. */
static inline uint64_t next_seq(void)
{
	if (likely(__atomic_load_n(&g_threads, __ATOMIC_RELAXED) <= 1))
		return g_seq++;
	return __atomic_fetch_add(&g_seq, 1, __ATOMIC_RELAXED);
}

static __attribute__((noinline)) void record(void *freed, void *p, size_t size, const struct walk_start *ws)
{
	int saved = errno;
	t_guard++;
	struct tstate *t = thread_state();
	if (!t)
		goto out;
	if (freed) {
		if (!ring_reserve(t, 2))
			goto out;
		uint64_t seq = next_seq();
		ring_put(t, 0, seq << 8 | RING_FREE);
		ring_put(t, 1, (uint64_t)(uintptr_t)freed);
		ring_publish(t, 2);
	}
	if (p) {
		uint64_t id;
		if (!stack_id(t, ws, &id) || !ring_reserve(t, 4))
			goto out;
		uint64_t seq = next_seq();
		ring_put(t, 0, seq << 8 | RING_ALLOC);
		ring_put(t, 1, (uint64_t)(uintptr_t)p);
		ring_put(t, 2, size);
		ring_put(t, 3, id);
		ring_publish(t, 4);
	}
out:
	t_guard--;
	errno = saved;
}

/* realloc of a live block. Once realloc has moved it, another thread may be
 * handed the old address and publish its allocation before we publish our
 * free; so the free's sequence number is taken before the call (with room
 * reserved, so publishing it never waits) and the event written after,
 * naming address 0 (nothing) if the block did not go away. */
static __attribute__((noinline)) void *realloc_recorded(void *old, size_t n, const struct walk_start *ws)
{
	int saved = errno;
	t_guard++;
	struct tstate *t = thread_state();
	if (!t || !ring_reserve(t, 2)) {
		t_guard--;
		errno = saved;
		return real_realloc(old, n);
	}
	uint64_t seq = next_seq();
	errno = saved;
	void *p = real_realloc(old, n);
	saved = errno;
	ring_put(t, 0, seq << 8 | RING_FREE);
	ring_put(t, 1, p ? (uint64_t)(uintptr_t)old : 0);
	ring_publish(t, 2);
	t_guard--;
	if (p)
		record(NULL, p, n, ws);
	errno = saved;
	return p;
}

static inline bool recording(void)
{
	if (unlikely(g_state == 0))
		init_once();
	return g_state > 0 && !t_guard;
}

EXPORT void *malloc(size_t n)
{
	if (unlikely(!real_malloc)) {
		resolve_real();
		if (!real_malloc)
			return boot_alloc(n);
	}
	void *p = real_malloc(n);
	if (p && recording()) {
		CALLER(ws);
		record(NULL, p, n, &ws);
	}
	return p;
}

EXPORT void free(void *p)
{
	if (unlikely(!p || is_boot(p)))
		return;
	if (unlikely(!real_free))
		resolve_real();
	/* Record first here: once freed, the address may be handed out again
	 * by another thread before our event is published. */
	if (recording())
		record(p, NULL, 0, NULL);
	real_free(p);
}

EXPORT void *calloc(size_t n, size_t m)
{
	if (unlikely(!real_calloc)) {
		/* dlsym itself calls calloc: serve it from the pool */
		if (__builtin_mul_overflow(n, m, &(size_t){0}))
			return NULL;
		void *b = boot_alloc(n * m);
		if (b)
			memset(b, 0, n * m);
		return b;
	}
	void *p = real_calloc(n, m);
	if (p && recording()) {
		CALLER(ws);
		record(NULL, p, n * m, &ws);
	}
	return p;
}

EXPORT void *realloc(void *old, size_t n)
{
	if (unlikely(is_boot(old))) {
		void *p = malloc(n);
		if (p && old)
			memcpy(p, old, n < 256 ? n : 256); /* pool blocks are tiny */
		return p;
	}
	if (unlikely(!real_realloc))
		resolve_real();
	if (!recording())
		return real_realloc(old, n);
	if (old && n == 0) {
		/* glibc frees the block: publish the free before the address can
		 * be reused */
		record(old, NULL, 0, NULL);
		return real_realloc(old, n);
	}
	CALLER(ws);
	if (!old) {
		void *p = real_realloc(NULL, n);
		if (p)
			record(NULL, p, n, &ws);
		return p;
	}
	return realloc_recorded(old, n, &ws);
}

EXPORT void *reallocarray(void *old, size_t n, size_t m)
{
	size_t total;
	if (__builtin_mul_overflow(n, m, &total)) {
		errno = ENOMEM;
		return NULL;
	}
	return realloc(old, total);
}

EXPORT int posix_memalign(void **out, size_t align, size_t n)
{
	if (unlikely(!real_posix_memalign))
		resolve_real();
	int rc = real_posix_memalign(out, align, n);
	if (rc == 0 && recording()) {
		CALLER(ws);
		record(NULL, *out, n, &ws);
	}
	return rc;
}

EXPORT void *aligned_alloc(size_t align, size_t n)
{
	if (unlikely(!real_aligned_alloc))
		resolve_real();
	void *p = real_aligned_alloc(align, n);
	if (p && recording()) {
		CALLER(ws);
		record(NULL, p, n, &ws);
	}
	return p;
}

EXPORT void *memalign(size_t align, size_t n)
{
	if (unlikely(!real_memalign))
		resolve_real();
	void *p = real_memalign(align, n);
	if (p && recording()) {
		CALLER(ws);
		record(NULL, p, n, &ws);
	}
	return p;
}

EXPORT void *valloc(size_t n)
{
	if (unlikely(!real_valloc))
		resolve_real();
	void *p = real_valloc(n);
	if (p && recording()) {
		CALLER(ws);
		record(NULL, p, n, &ws);
	}
	return p;
}

EXPORT void *pvalloc(size_t n)
{
	if (unlikely(!real_pvalloc))
		resolve_real();
	void *p = real_pvalloc(n);
	if (p && recording()) {
		CALLER(ws);
		record(NULL, p, n, &ws);
	}
	return p;
}
