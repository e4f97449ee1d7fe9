/* Stack ids: the walk from the hook's caller (CFI rules, libunwind where
 * they fail), the Python frames after the native ones, a per-thread cache
 * of stacks already sent, and the STACK record the first time. */
#include <sys/mman.h>
#include "shim/cfi.h"
#include "shim/shim_int.h"

static inline bool same_words(const uint64_t *a, const uint64_t *b, int n)
{
	uint64_t d = 0;
	for (int i = 0; i < n; i++)
		d |= a[i] ^ b[i];
	return d == 0;
}

/* The end of what is mapped above sp (at most 64 KiB, at least sp's page). */
static uintptr_t mapped_above(uintptr_t sp)
{
	uintptr_t pg = sp & ~(uintptr_t)4095;
	unsigned char vec[16];
	for (size_t len = 16 * 4096; len > 4096; len /= 2)
		if (mincore((void *)pg, len, vec) == 0)
			return pg + len;
	return pg + 4096;
}


/* Forget this thread's stack ids: a new thread chain starts them at 0. A
 * new generation empties every slot at once (no write to the cache: after
 * fork its pages stay shared with the parent's). */
void stack_cache_reset(struct tstate *t)
{
	t->next_id = 0;
	t->arena_used = 0;
	if (++t->gen == 0 && t->slots) { /* wrapped: old slots could look current */
		memset(t->slots, 0, sizeof(*t->slots) * CACHE_SLOTS);
		t->gen = 1;
	}
	if (++t->memo_gen == 0) { /* the memo's ids were the old chain's */
		if (t->memo)
			memset(t->memo, 0, sizeof(*t->memo) * MEMO_SLOTS);
		t->memo_gen = 1;
	}
}

/* The walk memo: a walk is a function of where it starts (ip, sp; bp where
 * a frame's rule used it before one was loaded), the CFI rules and the
 * stack words it read (cfi_reads). The same start and the same words are
 * the same frames, so the stack id of that walk: a check of a few words
 * that do not depend on each other, instead of a walk whose every load
 * waits on the one before, a hash and a compare of the whole stack. Kept
 * only for walks of the thread's own stack by the CFI rules with no frame
 * in Python's evaluation loop (its frames change under the same native
 * ones). Ids stay valid while the thread's ring chain lasts (memo_gen). */
static inline struct walk_memo *memo_slot(struct tstate *t, const struct walk_start *ws)
{
	uint64_t h = ((uint64_t)ws->ip ^ ((uint64_t)ws->sp << 7)) * 0x9e3779b97f4a7c15ULL;
	return &t->memo[h >> 57]; /* MEMO_SLOTS = 128 */
}

static inline bool memo_hit(const struct tstate *t, const struct walk_memo *m, const struct walk_start *ws)
{
	if (m->gen != t->memo_gen || m->ip != ws->ip || m->sp != ws->sp || (m->bp_in && m->bp != ws->bp))
		return false;
	uint64_t d = 0;
	for (int i = 0; i < m->nread; i++) {
		uint64_t v;
		memcpy(&v, (const void *)m->addr[i], 8); /* in [sp, stack_hi) of this thread's stack */
		d |= v ^ m->val[i];
	}
	return d == 0;
}

/* The walk wrote what it read into the slot (its arrays): the slot says
 * where that walk started and the id it came to. */
static void memo_keep(struct tstate *t, struct walk_memo *m, const struct walk_start *ws, const struct cfi_reads *rd,
		      uint32_t id)
{
	m->ip = ws->ip;
	m->sp = ws->sp;
	m->bp = ws->bp;
	m->bp_in = rd->bp_in;
	m->nread = rd->n;
	m->id = id;
	m->gen = t->memo_gen;
}
_Static_assert(MEMO_SLOTS == 128, "memo_slot takes the hash's top 7 bits");

/* Empty the stack cache without forgetting stack ids (the recorder keeps
 * every id this ring chain defined: a stack seen again is defined again,
 * under a new id). Returns the slot for hash h in the emptied cache. */
static struct cache_slot *cache_flush(struct tstate *t, uint64_t h)
{
	t->arena_used = 0;
	if (++t->gen == 0) {
		memset(t->slots, 0, sizeof(*t->slots) * CACHE_SLOTS);
		t->gen = 1;
	}
	return &t->slots[h & (CACHE_SLOTS - 1)];
}

/* The id of this thread's stack, sending its definition the first time.
 * The walk starts at the caller of the hook (ws): the shim's own frames are
 * never walked. On success the ring has room for one ALLOC event. */
bool stack_id(struct tstate *t, const struct walk_start *ws, uint64_t *out)
{
	uint32_t foreign_truncated = 0;
	void *ips[SHIM_DEPTH + 8 + 2 * SHIM_PY_MAX];
	int n = -1;
	bool foreign = false;
	struct walk_memo *m = NULL;
	struct cfi_reads rd = {.max = MEMO_READS};
	if (likely(t->rules && t->stack_hi && ws)) {
		uintptr_t hi = t->stack_hi;
		if (unlikely(ws->sp < t->stack_lo || ws->sp >= t->stack_hi)) {
			/* a coroutine, fiber or signal stack: read no further than
			 * what is mapped above the stack pointer */
			hi = mapped_above(ws->sp);
			foreign = true;
		} else if (likely(t->memo != NULL)) {
			m = memo_slot(t, ws);
			if (memo_hit(t, m, ws)) {
				*out = m->id;
				return true;
			}
			/* a miss: the slot takes this walk's reads (no copy on the
			 * stack, which may be a small one), kept if the walk is */
			m->gen = 0;
			rd.addr = m->addr;
			rd.val = m->val;
		}
		n = cfi_backtrace(t->rules, ws->ip, ws->sp, ws->bp, hi, false, ips, SHIM_DEPTH + 8, m ? &rd : NULL);
		if (n < 0)
			m = NULL; /* libunwind's walk: not memoized */
	}
	if (n < 0 && foreign) {
		/* libunwind would read past the foreign stack: keep the caller */
		ips[0] = (void *)ws->ip;
		n = 1;
		foreign_truncated = 1;
	}
	if (n < 0)
		n = unw_backtrace(ips, SHIM_DEPTH + 8);
	int skip = 0;
	while (skip < n && (uintptr_t)ips[skip] >= g_self_lo && (uintptr_t)ips[skip] < g_self_hi)
		skip++;
	uint32_t truncated = n >= SHIM_DEPTH + 8 || foreign_truncated;
	n -= skip;
	if (n > SHIM_DEPTH) {
		n = SHIM_DEPTH;
		truncated = 1;
	}
	uint64_t *s = (uint64_t *)(ips + skip);
	/* Python frames after the native ones, when the stack passes through
	 * the interpreter's evaluation loop (the recorder merges them) */
	int npy = 0;
	if (g_py) {
		for (int i = 0; i < n; i++)
			if ((uintptr_t)s[i] >= g_eval_lo && (uintptr_t)s[i] < g_eval_hi) {
				bool pt = false;
				m = NULL; /* the Python frames change under the same native ones */
				npy = python_frames(s + n, SHIM_PY_MAX, &pt);
				if (pt)
					truncated = 1;
				break;
			}
	}
	int nnat = n;
	n += 2 * npy;
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
		struct cache_slot *first = &t->slots[j];
		for (int probe = 0; probe < 8; probe++, j = (j + 1) & (CACHE_SLOTS - 1)) {
			struct cache_slot *c = &t->slots[j];
			if (c->gen != t->gen) {
				slot = c;
				break;
			}
			if (probe == 7)
				slot = first; /* crowded: the newest stack takes the first place (the old one is sent again if it recurs) */
			if (c->hash == h && c->depth == ((uint32_t)n | truncated << 31) &&
			    same_words(t->arena + c->off, s, n)) {
				*out = c->id;
				if (m && rd.n >= 0)
					memo_keep(t, m, ws, &rd, c->id);
				return true;
			}
		}
	}
	/* new to this thread: its Python code objects' names first, then the
	 * stack, with room for the event that uses it (so a ring switch never
	 * falls between the two) */
	for (int i = nnat; i < n; i += 2) {
		uintptr_t code = (uintptr_t)(s[i] & KILN_PY_ADDR_MASK);
		if (code && !pycode_sent(t, code))
			pycode_define(t, code);
	}
	if (!ring_reserve(t, (uint64_t)n + 2 + 4))
		return false;
	uint32_t id = t->next_id++;
	ring_put(t, 0, ((uint64_t)npy << 40) | ((uint64_t)truncated << 32) | ((uint64_t)n << 8) | RING_STACK);
	ring_put(t, 1, id);
	for (int i = 0; i < n; i++)
		ring_put(t, 2 + (uint64_t)i, s[i]);
	ring_publish(t, (uint64_t)n + 2);
	if (slot && t->arena_used + (uint32_t)n > ARENA_WORDS)
		slot = cache_flush(t, h); /* every place taken: start the cache again (ids go on) */
	if (slot && t->arena_used + (uint32_t)n <= ARENA_WORDS) {
		memcpy(t->arena + t->arena_used, s, (size_t)n * 8);
		slot->hash = h;
		slot->id = id;
		slot->off = t->arena_used;
		slot->depth = (uint32_t)n | truncated << 31;
		slot->gen = t->gen;
		t->arena_used += (uint32_t)n;
	}
	*out = id;
	if (m && rd.n >= 0)
		memo_keep(t, m, ws, &rd, id);
	return true;
}

static void thread_stack_bounds(struct tstate *t)
{
	pthread_attr_t attr;
	void *addr;
	size_t size;
	if (pthread_getattr_np(pthread_self(), &attr) == 0) {
		if (pthread_attr_getstack(&attr, &addr, &size) == 0) {
			t->stack_lo = (uintptr_t)addr;
			t->stack_hi = (uintptr_t)addr + size;
		}
		pthread_attr_destroy(&attr);
	}
}


/* The thread's stack cache, its CFI rules and its stack's bounds (made once
 * per thread; a forked child inherits its parent thread's). */
void thread_caches(struct tstate *t)
{
	void *s = mmap(NULL, sizeof(*t->slots) * CACHE_SLOTS, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	void *a = mmap(NULL, 8 * (size_t)ARENA_WORDS, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	void *rl = mmap(NULL, sizeof(struct cfi_rule) * CFI_RULES, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	void *mm = mmap(NULL, sizeof(struct walk_memo) * MEMO_SLOTS, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (s != MAP_FAILED && a != MAP_FAILED) {
		t->slots = s;
		t->arena = a;
		t->rules = rl != MAP_FAILED ? rl : NULL;
		t->memo = mm != MAP_FAILED ? mm : NULL;
		if (!t->memo_gen)
			t->memo_gen = 1;
		thread_stack_bounds(t);
	} else {
		if (rl != MAP_FAILED)
			munmap(rl, sizeof(struct cfi_rule) * CFI_RULES);
		if (mm != MAP_FAILED)
			munmap(mm, sizeof(struct walk_memo) * MEMO_SLOTS);
		if (s != MAP_FAILED)
			munmap(s, sizeof(*t->slots) * CACHE_SLOTS);
		if (a != MAP_FAILED)
			munmap(a, 8 * (size_t)ARENA_WORDS);
	}
}

void thread_caches_free(struct tstate *t)
{
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
	if (t->memo) {
		munmap(t->memo, sizeof(struct walk_memo) * MEMO_SLOTS);
		t->memo = NULL;
	}
}
