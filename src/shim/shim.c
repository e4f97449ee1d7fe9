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
 *   - events go to a per-thread shared-memory ring (a sealed memfd handed to
 *     the recorder over an inherited socket), so a program killed by SIGKILL
 *     loses nothing it had published, and a privilege drop changes nothing;
 *   - a ring that fills grows (up to a per-process budget); past that the
 *     thread waits for the recorder, and drops only after it drained
 *     nothing for KILN_RING_WAIT_NS, then drops
 *     events (counted in its ring) and runs on; if the recorder goes away,
 *     recording stops and the program runs on.
 * The ring format and the messages are include/kiln/ring.h. */
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include "kiln/kiln.h"
#include "shim/shim_int.h"

TLS int t_guard;

__attribute__((noinline)) void record(void *freed, void *p, size_t size, const struct walk_start *ws)
{
	int saved = errno;
	t_guard++;
	bool att = g_attached;
	if (!attach_enter(att))
		goto out;
	struct tstate *t = thread_state();
	if (!t)
		goto out;
	if (att && unlikely(++t->events % 4096 == 0) && !recorder_seen_lately())
		goto out;
	if (unlikely(shim_sample_mean)) {
		uint64_t full = shim_sample__full();
		if (full && !channel_send(KILN_MSG_LOSS, HL_SAMPLE_FULL, full, -1))
			shim_sample__unfull(full);
	}
	if (unlikely(g_py)) {
		if (!g_py_fin_sent && *(const volatile uintptr_t *)(g_py_rt + g_pyo.rt_finalizing))
			python_finalizing(t);
		if (unlikely(g_pyd_want) && g_pyd_state == 0 && *(const volatile int *)(g_py_rt + g_pyo.rt_preinit))
			python_domains_wrap();
	}
	if (freed) {
		if (!ring_reserve(t, 2)) {
			count_dropped(t, 1 + (p != NULL));
			goto out;
		}
		uint64_t seq = seq_begin(t);
		ring_put(t, 0, seq << 8 | RING_FREE);
		ring_put(t, 1, (uint64_t)(uintptr_t)freed);
		ring_publish(t, 2);
		seq_end(t);
	}
	if (p) {
		uint64_t id;
		if (!stack_id(t, ws, &id) || !ring_reserve(t, 4)) {
			count_dropped(t, 1);
			goto out;
		}
		uint64_t seq = seq_begin(t);
		ring_put(t, 0, seq << 8 | RING_ALLOC);
		ring_put(t, 1, (uint64_t)(uintptr_t)p);
		ring_put(t, 2, size);
		ring_put(t, 3, id);
		ring_publish(t, 4);
		seq_end(t);
	}
out:
	attach_leave(att);
	t_guard--;
	errno = saved;
}

/* realloc of a live block. Once realloc has moved it, another thread may be
 * handed the old address and publish its allocation before we publish our
 * free; so the free's sequence number is taken before the call (with room
 * reserved, so publishing it never waits) and the event written after: a
 * FREE of the old block, or a NOP if realloc failed (the block stays). */
__attribute__((noinline)) void *realloc_recorded(void *old, size_t n, const struct walk_start *ws,
							 void *(*fn)(void *ctx, void *old, size_t n), void *ctx)
{
	int saved = errno;
	if (!shim_sample__free(old)) {
		/* sampling, and the old block was not taken: only the new one may be */
		t_guard++;
		void *q = fn(ctx, old, n);
		t_guard--;
		saved = errno;
		if (q && shim_sample__take(q, n))
			record(NULL, q, n, ws);
		errno = saved;
		return q;
	}
	t_guard++;
	bool att = g_attached;
	struct tstate *t = attach_enter(att) ? thread_state() : NULL;
	if (!t || !ring_reserve(t, 2)) {
		if (t)
			count_dropped(t, 2);
		attach_leave(att);
		errno = saved;
		void *q = fn(ctx, old, n);
		t_guard--;
		if (!q && shim_sample_mean)
			shim_sample__restore(old);
		return q;
	}
	uint64_t seq = seq_begin(t); /* the thread is busy until published: the recorder waits */
	errno = saved;
	void *p = fn(ctx, old, n);
	saved = errno;
	if (!p && shim_sample_mean)
		shim_sample__restore(old); /* the taken block stays live */
	ring_put(t, 0, seq << 8 | (p ? RING_FREE : RING_NOP));
	ring_put(t, 1, p ? (uint64_t)(uintptr_t)old : 0);
	ring_publish(t, 2);
	seq_end(t);
	attach_leave(att);
	t_guard--;
	if (p && shim_sample__take(p, n))
		record(NULL, p, n, ws);
	errno = saved;
	return p;
}

static void *libc_realloc(void *ctx, void *old, size_t n)
{
	return real_realloc(old, n);
}

HOOK void *malloc(size_t n)
{
	if (unlikely(!real_malloc)) {
		resolve_real();
		if (!real_malloc)
			return boot_alloc(n);
	}
	void *p = real_malloc(n);
	RECORD_ALLOC(p, n);
	return p;
}

/* What every free does before the real one: false when p is not the real
 * heap's to free. The event goes first: once freed, the address may be
 * handed out again by another thread before our event is published. */
static inline bool free_recorded(void *p)
{
	if (unlikely(!p || is_boot(p)))
		return false;
	if (unlikely(!real_free))
		resolve_real();
	if (recording() && shim_sample__free(p))
		record(p, NULL, 0, NULL);
	return true;
}

HOOK void free(void *p)
{
	if (free_recorded(p))
		real_free(p);
}

/* C23: a free that names the size (and alignment) it allocated. Declared
 * here: the C library may not have them yet. */
void free_sized(void *p, size_t size);
void free_aligned_sized(void *p, size_t align, size_t size);

HOOK void free_sized(void *p, size_t size)
{
	if (!free_recorded(p))
		return;
	if (real_free_sized)
		real_free_sized(p, size);
	else
		real_free(p);
}

HOOK void free_aligned_sized(void *p, size_t align, size_t size)
{
	if (!free_recorded(p))
		return;
	if (real_free_aligned_sized)
		real_free_aligned_sized(p, align, size);
	else
		real_free(p);
}

HOOK void *calloc(size_t n, size_t m)
{
	if (unlikely(!real_calloc)) {
		/* dlsym itself calls calloc: serve it from the pool */
		size_t total;
		if (__builtin_mul_overflow(n, m, &total))
			return NULL;
		void *b = boot_alloc(total);
		if (b)
			memset(b, 0, total);
		return b;
	}
	void *p = real_calloc(n, m);
	RECORD_ALLOC(p, n * m);
	return p;
}

HOOK void *realloc(void *old, size_t n)
{
	if (unlikely(is_boot(old))) {
		/* a pool block moves to the real heap, whole */
		void *p = malloc(n);
		if (p) {
			size_t had = boot_size(old);
			memcpy(p, old, n < had ? n : had);
		}
		return p;
	}
	if (unlikely(!real_realloc))
		resolve_real();
	if (!recording())
		return real_realloc(old, n);
	if (old && n == 0) {
		/* glibc frees the block: publish the free before the address can
		 * be reused */
		if (shim_sample__free(old))
			record(old, NULL, 0, NULL);
		return real_realloc(old, n);
	}
	CALLER(ws);
	if (!old) {
		void *p = real_realloc(NULL, n);
		if (p && shim_sample__take(p, n))
			record(NULL, p, n, &ws);
		return p;
	}
	return realloc_recorded(old, n, &ws, libc_realloc, NULL);
}

HOOK void *reallocarray(void *old, size_t n, size_t m)
{
	size_t total;
	if (__builtin_mul_overflow(n, m, &total)) {
		errno = ENOMEM;
		return NULL;
	}
	return realloc(old, total);
}

HOOK int posix_memalign(void **out, size_t align, size_t n)
{
	if (unlikely(!real_posix_memalign))
		resolve_real();
	int rc = real_posix_memalign(out, align, n);
	if (rc == 0)
		RECORD_ALLOC(*out, n);
	return rc;
}

HOOK void *aligned_alloc(size_t align, size_t n)
{
	if (unlikely(!real_aligned_alloc))
		resolve_real();
	void *p = real_aligned_alloc(align, n);
	RECORD_ALLOC(p, n);
	return p;
}

HOOK void *memalign(size_t align, size_t n)
{
	if (unlikely(!real_memalign))
		resolve_real();
	void *p = real_memalign(align, n);
	RECORD_ALLOC(p, n);
	return p;
}

HOOK void *valloc(size_t n)
{
	if (unlikely(!real_valloc))
		resolve_real();
	void *p = real_valloc(n);
	RECORD_ALLOC(p, n);
	return p;
}

HOOK void *pvalloc(size_t n)
{
	if (unlikely(!real_pvalloc))
		resolve_real();
	void *p = real_pvalloc(n);
	RECORD_ALLOC(p, n);
	return p;
}

/* ---- attached mode (shim/attach.c): the hooks the GOTs are patched with ---- */
/* Local names for the hooks (a reference to "malloc" from here would bind to
 * the C library's, the shim being loaded last and privately). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-attributes"
#endif
extern __typeof(malloc) kiln_hook_malloc __attribute__((alias("malloc"), visibility("hidden")));
extern __typeof(calloc) kiln_hook_calloc __attribute__((alias("calloc"), visibility("hidden")));
extern __typeof(realloc) kiln_hook_realloc __attribute__((alias("realloc"), visibility("hidden")));
extern __typeof(free) kiln_hook_free __attribute__((alias("free"), visibility("hidden")));
extern __typeof(free_sized) kiln_hook_free_sized __attribute__((alias("free_sized"), visibility("hidden")));
extern __typeof(free_aligned_sized) kiln_hook_free_aligned_sized
	__attribute__((alias("free_aligned_sized"), visibility("hidden")));
extern __typeof(reallocarray) kiln_hook_reallocarray __attribute__((alias("reallocarray"), visibility("hidden")));
extern __typeof(posix_memalign) kiln_hook_posix_memalign
	__attribute__((alias("posix_memalign"), visibility("hidden")));
extern __typeof(aligned_alloc) kiln_hook_aligned_alloc __attribute__((alias("aligned_alloc"), visibility("hidden")));
extern __typeof(memalign) kiln_hook_memalign __attribute__((alias("memalign"), visibility("hidden")));
extern __typeof(valloc) kiln_hook_valloc __attribute__((alias("valloc"), visibility("hidden")));
extern __typeof(pvalloc) kiln_hook_pvalloc __attribute__((alias("pvalloc"), visibility("hidden")));
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

const struct got_hook attach_hooks[] = {
	{"malloc", (void *)kiln_hook_malloc},
	{"calloc", (void *)kiln_hook_calloc},
	{"realloc", (void *)kiln_hook_realloc},
	{"free", (void *)kiln_hook_free},
	{"free_sized", (void *)kiln_hook_free_sized},
	{"free_aligned_sized", (void *)kiln_hook_free_aligned_sized},
	{"reallocarray", (void *)kiln_hook_reallocarray},
	{"posix_memalign", (void *)kiln_hook_posix_memalign},
	{"aligned_alloc", (void *)kiln_hook_aligned_alloc},
	{"memalign", (void *)kiln_hook_memalign},
	{"valloc", (void *)kiln_hook_valloc},
	{"pvalloc", (void *)kiln_hook_pvalloc},
	{"dlopen", (void *)attach_dlopen},
	{"dlclose", (void *)attach_dlclose},
};
const size_t attach_nhooks = ARRAY_COUNT(attach_hooks);
