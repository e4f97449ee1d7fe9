/* What the shim's files share: the process's recording state, the real
 * functions and the channel (all hidden: nothing here is the program's).
 *   shim.c     the allocation hooks and what they record
 *   stack.c    stack ids: the walk, the per-thread cache, STACK records
 *   ring.c     a thread's ring: made, grown, waited on, retired
 *   process.c  the process: set-up, fork handlers, the channel, losses
 *   python.c   CPython: its frames, code names, allocator domains
 *   boot.c     the real functions, found, and the pool before them
 *   exec.c     the exec family;  attach.c  attached mode (GOT patching) */
#ifndef KILN_SHIM_INT_H
#define KILN_SHIM_INT_H

#define UNW_LOCAL_ONLY /* the local unwinder's fast paths; before any libunwind.h */
#include <libunwind.h>
#include <pthread.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "kiln/python.h"
#include "kiln/ring.h"
#include "shim/got.h"
#include "shim/sample.h"

#define EXPORT __attribute__((visibility("default")))
/* The allocation hooks hold no arrays: the canary's load and check, on
 * every malloc and free of the program, buy nothing there. */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#define HOOK EXPORT __attribute__((no_stack_protector))
#else
#define HOOK EXPORT
#endif
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define TLS __thread __attribute__((tls_model("initial-exec")))
#define ARRAY_COUNT(a) (sizeof(a) / sizeof((a)[0]))

typedef void *(*malloc_fn)(size_t);
typedef void *(*calloc_fn)(size_t, size_t);
typedef void *(*realloc_fn)(void *, size_t);
typedef void (*free_fn)(void *);
typedef void (*free_sized_fn)(void *, size_t);
typedef void (*free_aligned_sized_fn)(void *, size_t, size_t);
typedef int (*posix_memalign_fn)(void **, size_t, size_t);
typedef void *(*memalign_fn)(size_t, size_t);
typedef void *(*valloc_fn)(size_t);
typedef int (*execve_fn)(const char *, char *const[], char *const[]);
typedef int (*spawn_fn)(pid_t *, const char *, const posix_spawn_file_actions_t *, const posix_spawnattr_t *,
			char *const[], char *const[]);
typedef int (*system_fn)(const char *);
typedef FILE *(*popen_fn)(const char *, const char *);

extern execve_fn real_execve, real_execvpe;
extern spawn_fn real_posix_spawn, real_posix_spawnp;
extern system_fn real_system;
extern popen_fn real_popen;

extern int g_state;     /* 0 unknown, 1 recording, -1 off */
extern bool g_nofollow; /* --no-follow: children and exec'd programs are not recorded */
/* > 0 while the shim itself runs on this thread: its own calls are not recorded */
extern TLS int t_guard;

extern malloc_fn real_malloc;
extern calloc_fn real_calloc;
extern realloc_fn real_realloc;
extern free_fn real_free;

extern int g_sock;                 /* the channel to the recorder (ring.h) */
extern ino_t g_sock_ino;           /* its inode */
bool sock_is_ours(void);            /* g_sock is still the channel (the program may close it) */
bool channel_ours(void);            /* ... or made again on the recorder's named socket */
void channel_set_path(const char *path); /* that socket's path (NULL: none) */
extern pid_t g_pid, g_recorder;
extern volatile int g_recorder_gone;
extern uint64_t g_ring_bytes;      /* bytes of rings this process holds */
extern int g_py_fin_sent;          /* RING_PYFIN written in this image */

/* Attached (attach.c): each attach is a generation; a thread's ring from an
 * earlier one is not written again. */
extern int g_attached;
extern uint32_t g_attach_gen;
extern uint64_t g_attach_sample;   /* the next attach's --heap-sample mean */
extern int g_inflight;             /* threads inside record() while attached */
extern char kiln_ctl[256];         /* the recorder's snapshot socket (exported) */
/* Every ring made while attached, so that detaching unmaps them all. */
#define ATTACH_RINGS 131072
struct ring_ref {
	void *hdr;
	size_t size;
};
extern struct ring_ref *g_ringrefs;
extern uint32_t g_nringrefs;
/* The hooks GOT slots are pointed at, with dlopen's and dlclose's (shim.c,
 * where the hooks' local names are) */

extern const struct got_hook attach_hooks[];
extern const size_t attach_nhooks;
void *attach_dlopen(const char *file, int mode);
int attach_dlclose(void *h);
/* The recorder died without detaching: put the program's slots back. */
void attach_lost_recorder(void);

/* Look the real functions up (once); through handle (RTLD_DEFAULT when
 * attached); one symbol. */
void resolve_real(void);
void resolve_alloc(void *handle);
void *real_sym(void *handle, const char *name);
/* Once per process: own text, caches, fork handlers, Python. */
void process_setup(void);
/* A new process image (launch, fork, attach): new nonce, ring ids, seqs. */
void new_image(void);
/* Whether the recorder is still there (false once its socket hung up). */
bool recorder_alive(void);
/* Send one message to the recorder (ring.h), with a descriptor or -1. */
bool channel_send2(uint16_t type, uint64_t cause, uint64_t count, int fd, int fd2);
static inline bool channel_send(uint16_t type, uint64_t cause, uint64_t count, int fd)
{
	return channel_send2(type, cause, count, fd, -1);
}

#define SHIM_DEPTH 128
#define SHIM_PY_MAX 60            /* Python frames in a stack: 2 words each, within KILN_MAX_DEPTH */
#define PYCODE_SET 4096           /* per thread: code objects whose names were sent */
#define CACHE_SLOTS 16384         /* per-thread stack cache */
#define ARENA_WORDS (1u << 20)    /* ips kept for the cache */
#define MEMO_SLOTS 128            /* per-thread walk memo (stack.c) */
#define MEMO_READS 24             /* stack words a memoized walk may have read */

/* boot.c: the real functions (also real_malloc... above), and the pool that
 * serves dlsym's own allocations before they are known */
extern free_sized_fn real_free_sized;
extern free_aligned_sized_fn real_free_aligned_sized;
extern posix_memalign_fn real_posix_memalign;
extern memalign_fn real_aligned_alloc, real_memalign;
extern valloc_fn real_valloc, real_pvalloc;
extern char boot_pool[1 << 16];
void *boot_alloc(size_t n);
size_t boot_size(const void *p); /* what a pool block was asked for */
static inline bool is_boot(const void *p)
{
	return (const char *)p >= boot_pool && (const char *)p < boot_pool + sizeof(boot_pool);
}

struct cfi_rule;

/* A walk the thread made, its stack's id, and what to check to know the
 * same walk again without walking (stack.c): where it started and the
 * stack words it read, with their values. */
struct walk_memo {
	uintptr_t ip, sp, bp;     /* bp only where bp_in */
	uint32_t gen, id;         /* gen: the thread's memo_gen when kept (0: empty) */
	int32_t nread;
	bool bp_in;
	uintptr_t addr[MEMO_READS];
	uint64_t val[MEMO_READS];
};

/* A thread's recording state: its ring (ring.c), its stack cache and
 * unwinding rules (stack.c). */
struct cache_slot {
	uint64_t hash;
	uint32_t id, off;
	uint32_t depth; /* | 1u << 31 when truncated */
	uint32_t gen;   /* a slot of another generation is empty */
};

struct tstate {
	struct kiln_ring_hdr *hdr;
	uint64_t *data;
	uint64_t mask, head, tail;
	size_t ring_bytes;
	unsigned destructs;
	bool dropping;            /* the recorder did not drain: events are dropped (counted) */
	bool stopped;             /* the recorder gave up on this thread's ring */
	uint32_t noring;          /* events lost because no ring could be made (since last report) */
	uint32_t next_id;
	uint32_t gen;             /* of the stack cache: bumped to empty it */
	struct cache_slot *slots; /* CACHE_SLOTS */
	uint64_t *arena;          /* ARENA_WORDS */
	uint32_t arena_used;
	struct cfi_rule *rules;   /* CFI_RULES */
	struct walk_memo *memo;   /* MEMO_SLOTS */
	uint32_t memo_gen;        /* of the stack ids the memo holds: bumped with a new chain */
	uintptr_t stack_lo, stack_hi;
	uint32_t agen;            /* the attach generation its ring belongs to */
	uint64_t *pycodes;        /* PYCODE_SET code objects already sent (0: empty) */
	uint32_t pycode_gen;      /* the image generation they were sent in */
	uint32_t events;          /* while attached: a look at the recorder every 4096 events */
	bool seq_owner;           /* it alone takes seqs, without a lock (seq_begin) */
	uint64_t last_stamp;      /* its last stamp in this ring chain (0: none yet) */
};
extern TLS struct tstate t_state;

/* This thread's state, its ring made if need be (NULL: not recording):
 * a thread with its ring and caches is answered here, on every event; the
 * rest is ring.c's. */
struct tstate *thread_state_slow(void);
static inline struct tstate *thread_state(void)
{
	struct tstate *t = &t_state;
	if (likely(t->hdr && t->agen == g_attach_gen && t->slots))
		return t;
	return thread_state_slow();
}

static inline pid_t gettid_raw(void)
{
	return (pid_t)syscall(SYS_gettid);
}

/* process.c: the image, the fork handlers, the channel */
extern uint64_t g_nonce;

/* seq.c: how this image numbers its events (include/kiln/ring.h) */
enum { SEQ_OWNER = 0, SEQ_COUNTER = 1, SEQ_STAMPS = 2, SEQ_SWITCHING = 3 };
extern uint64_t g_seq;             /* per process image (seq_begin) */
extern int g_seq_mode;             /* SEQ_*: owner until a second thread makes a ring */
extern int g_seq_owner_busy;       /* the owner is taking a seq without a lock */
extern uint64_t g_stamp_offset;     /* stamps: seq = tsc + this (the page's base - tsc0) */
extern struct kiln_image_page *g_page; /* stamps: the image page, else NULL */
extern int g_page_fd;
int seq_page_fd(void); /* g_page_fd while it is still the page's (checked by inode), else -1 */
/* A new image: owner mode if a second thread could later make the owner
 * pass a barrier, else the counter. */
void seq_new_image(void);
/* An attach: every thread may allocate at once; stamps if they can be. */
void seq_attach(void);
/* Detached (the socket closed): the image page goes. */
void seq_detach(void);
/* The thread making a ring: the image's seq owner if it is the first (and
 * the image may have one), else the image turns to stamps (or the counter)
 * if it has not already. */
void seq_claim(struct tstate *t);
/* The id of a ring about to be sent, and the page to send with it (or NULL);
 * a ring that could not be sent is counted (the recorder stops waiting). */
uint64_t seq_ring_id(struct kiln_image_page **page);
void seq_ring_failed(void);
/* A seq once the image has switched modes. */
uint64_t seq_shared_slow(struct tstate *t);

/* The time stamp counter, read once every instruction before has executed
 * and every load before is seen (rdtscp). rdtsc alone may read it early
 * (out of order, by up to some hundred cycles here): enough to stamp an
 * allocation before the free, in another thread, that handed its block
 * back to the allocator, or a free before the allocation of the block it
 * frees, whose address another thread passed it (both seen here: the
 * recorder then finds an allocation at an address still live). Later
 * stores are not seen before it: a free stamped before its call comes
 * before the block can be reused. */
#if defined(__x86_64__)
static inline uint64_t tsc_read(void)
{
	uint32_t lo, hi, aux;
	__asm__ volatile("rdtscp" : "=a"(lo), "=d"(hi), "=c"(aux) : : "memory");
	return (uint64_t)hi << 32 | lo;
}
#else
static inline uint64_t tsc_read(void)
{
	return 0; /* never stamps (stamps_possible, seq.c) */
}
#endif
extern uint64_t g_ring_ids;        /* ring ids of this image */
extern uintptr_t g_self_lo, g_self_hi; /* the shim's own text, skipped in stacks */
extern pthread_key_t g_key;
extern bool g_key_ok;
extern uint32_t g_image_gen;       /* bumped with each new image */
extern uint64_t g_loss_unsent;     /* losses no message could tell yet */
void init_once(void);
uint64_t mono_ns(void);
void loss_send_noring(uint64_t n);
void loss_carry(struct kiln_ring_hdr *h); /* the untold losses into a ring's header */
bool recorder_seen_lately(void);   /* attached: recorder_alive at most every 100 ms */

/* ring.c: a thread's ring (ring.h) */
/* A sealed memfd of size bytes (no shrink, no grow), mapped shared and not
 * into forked children: what rings and the image page are. NULL (and no
 * descriptor) on failure. */
void *shared_make(const char *name, size_t size, int *fd);
void thread_end(void *arg);        /* the thread-end key's destructor */
void count_dropped(struct tstate *t, uint64_t events);
bool ring_reserve_slow(struct tstate *t, uint64_t n);

static inline bool ring_has_room(struct tstate *t, uint64_t n)
{
	return t->mask + 1 - (t->head - t->tail) >= n;
}

/* Room for n words; false when nothing may be written (the caller counts).
 * The room known is checked here, on every event; the rest (the recorder's
 * tail read, growing, waiting) is ring.c's. */
static inline bool ring_reserve(struct tstate *t, uint64_t n)
{
	if (likely(ring_has_room(t, n)))
		return true;
	return ring_reserve_slow(t, n);
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

/* The next sequence number of this process image (the recorder merges the
 * rings in its order), taken once the ring has room; seq_end once the event
 * is published.
 *
 * While one thread alone has a ring (most programs, and every process
 * between its start and its second thread), it numbers its events with a
 * plain load and store: no locked instruction, which drains the store
 * buffer full of ring words on every event. The second thread to make a
 * ring switches the image (seq_claim, seq.c): it sets SEQ_SWITCHING, makes
 * the owner pass a barrier (membarrier), and waits until the owner is out of
 * the window below; then every thread stamps its events with the time stamp
 * counter (or, where stamps cannot be had, takes seqs from one atomic
 * counter, a cache line every thread writes).
 *
 *   owner:  busy = 1 ─► mode owner? ─yes─► s = seq; seq = s + 1 ─► busy = 0
 *   second: mode = switching ─► membarrier ─► while (busy) wait ─► mode = stamps
 *
 * A stamping thread says it is inside an event (hdr->busy = a bound its
 * stamp is at or above) before it reads the counter, and 0 once the event
 * is published: the recorder's watermark (heapsrc.c) passes no event of
 * another thread while this one may still publish an earlier one. */
static inline uint64_t seq_begin(struct tstate *t)
{
	if (t->seq_owner) {
		__atomic_store_n(&g_seq_owner_busy, 1, __ATOMIC_RELAXED);
		if (likely(__atomic_load_n(&g_seq_mode, __ATOMIC_RELAXED) == SEQ_OWNER)) {
			uint64_t s = __atomic_load_n(&g_seq, __ATOMIC_RELAXED);
			__atomic_store_n(&g_seq, s + 1, __ATOMIC_RELAXED);
			__atomic_store_n(&g_seq_owner_busy, 0, __ATOMIC_RELEASE);
			return s;
		}
		__atomic_store_n(&g_seq_owner_busy, 0, __ATOMIC_RELEASE);
		t->seq_owner = false; /* shared for the rest of this image */
	}
	int mode = __atomic_load_n(&g_seq_mode, __ATOMIC_ACQUIRE);
	if (mode == SEQ_COUNTER)
		return __atomic_fetch_add(&g_seq, 1, __ATOMIC_RELAXED);
	if (likely(mode == SEQ_STAMPS)) {
		uint64_t lo = t->last_stamp + 1;
		__atomic_store_n(&t->hdr->busy, lo, __ATOMIC_RELAXED);
		/* the store above before the counter's read: seen by the
		 * recorder's barrier if the read came before its watermark */
		uint64_t s = tsc_read() + g_stamp_offset;
		if (unlikely(s < lo))
			s = lo; /* seqs rise in a ring, whatever the counters of two cores say */
		t->last_stamp = s;
		return s;
	}
	return seq_shared_slow(t);
}

static inline void seq_end(struct tstate *t)
{
	/* a stamping image only (an owner that saw the switch after its seq
	 * clears a busy word it never set: no harm) */
	if (__atomic_load_n(&g_seq_mode, __ATOMIC_RELAXED) == SEQ_STAMPS)
		__atomic_store_n(&t->hdr->busy, 0, __ATOMIC_RELEASE); /* after the head */
}

/* stack.c: stack ids, sent once per thread */
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
/* Forget this thread's stack ids: a new thread chain starts them at 0. */
void stack_cache_reset(struct tstate *t);
/* The id of this thread's stack, its definition sent the first time; on
 * success the ring has room for one ALLOC event. */
bool stack_id(struct tstate *t, const struct walk_start *ws, uint64_t *out);
/* The thread's stack cache, its CFI rules and its stack's bounds: made once
 * per thread (a forked child inherits its parent thread's), freed at its end. */
void thread_caches(struct tstate *t);
void thread_caches_free(struct tstate *t);

/* python.c: a CPython in this process */
extern bool g_py;
extern uintptr_t g_eval_lo, g_eval_hi; /* its evaluation loop's text */
extern struct kiln_py_offsets g_pyo;
extern const char *g_py_rt;        /* _PyRuntime */
extern bool g_pyd_want;            /* its allocator domains to be wrapped (KILN_PYDOMAINS) */
extern int g_pyd_state;            /* 0 not yet, 1 wrapped, -1 never (no API) */
void python_init(void);
/* This thread's Python frames, innermost first, two words each (ring.h). */
int python_frames(uint64_t *w, int max, bool *truncated);
/* code's names to the ring, once per thread and image */
bool pycode_sent(struct tstate *t, uint64_t code);
void pycode_define(struct tstate *t, uintptr_t code);
void python_finalizing(struct tstate *t);
void python_domains_wrap(void);

/* shim.c: the hooks */
/* Record a free of freed and/or an allocation of p (size bytes) made where
 * ws says; the errno the program saw is kept. */
void record(void *freed, void *p, size_t size, const struct walk_start *ws);
/* realloc of a live block through fn (see shim.c for the ordering rule). */
void *realloc_recorded(void *old, size_t n, const struct walk_start *ws, void *(*fn)(void *ctx, void *old, size_t n),
		       void *ctx);

/* While attached, a thread about to touch its ring says so: detaching
 * waits for threads inside before it unmaps rings, and one that comes in
 * after recording stopped goes back out (false; attach_leave all the same). */
static inline bool attach_enter(bool att)
{
	if (!att)
		return true;
	__atomic_add_fetch(&g_inflight, 1, __ATOMIC_SEQ_CST);
	return __atomic_load_n(&g_state, __ATOMIC_SEQ_CST) > 0;
}

void attach_left_detached(void);
static inline void attach_leave(bool att)
{
	if (att) {
		__atomic_sub_fetch(&g_inflight, 1, __ATOMIC_SEQ_CST);
		if (unlikely(__atomic_load_n(&g_state, __ATOMIC_ACQUIRE) < 0))
			attach_left_detached(); /* detached meanwhile: its ring, if left mapped, goes */
	}
}

/* Whether this call is the program's to record (set up at the first). */
static inline bool recording(void)
{
	if (unlikely(g_state == 0) && !t_guard) /* never from inside init_once itself */
		init_once();
	return g_state > 0 && !t_guard;
}

/* In an allocation hook, after the real call: record the block at p (n
 * bytes) when recording and, sampled, taken (shim/sample.h). A macro:
 * CALLER reads the hook's own frame. */
#define RECORD_ALLOC(p, n)                                                                                     \
	do {                                                                                                   \
		if ((p) && recording() && shim_sample__take((p), (n))) {                                       \
			CALLER(ws_);                                                                           \
			record(NULL, (p), (n), &ws_);                                                          \
		}                                                                                              \
	} while (0)

#endif
