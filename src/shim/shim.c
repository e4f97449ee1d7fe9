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
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <alloca.h>
#include <stdio.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#include "kiln/kiln.h"
#include "kiln/ring.h"
#include "kiln/python.h"
#include "shim/cfi.h"
#include "shim/env.h"
#include "shim/got.h"
#include "shim/sample.h"
#include "shim/shim_int.h"

#define SHIM_DEPTH 128
#define SHIM_PY_MAX 60            /* Python frames in a stack: 2 words each, within KILN_MAX_DEPTH */
#define PYCODE_SET 4096           /* per thread: code objects whose names were sent */
#define CACHE_SLOTS 16384         /* per-thread stack cache */
#define ARENA_WORDS (1u << 20)    /* ips kept for the cache */


malloc_fn real_malloc;
calloc_fn real_calloc;
realloc_fn real_realloc;
free_fn real_free;
static free_sized_fn real_free_sized;
static free_aligned_sized_fn real_free_aligned_sized;
static posix_memalign_fn real_posix_memalign;
static memalign_fn real_aligned_alloc, real_memalign;
static valloc_fn real_valloc, real_pvalloc;
execve_fn real_execve, real_execvpe;
spawn_fn real_posix_spawn, real_posix_spawnp;
system_fn real_system;
popen_fn real_popen;

/* ---- bootstrap pool for allocations made while resolving the real functions ----
 * Each block carries its size in the 16 bytes before it, so realloc of a
 * pool block copies exactly what it held. */
#define BOOT_HDR 16
static char boot_pool[1 << 16] __attribute__((aligned(64)));
static size_t boot_used;

static void *boot_alloc(size_t n)
{
	if (n > sizeof(boot_pool))
		return NULL;
	size_t need = (n + BOOT_HDR + 15) & ~(size_t)15;
	size_t off = __atomic_fetch_add(&boot_used, need, __ATOMIC_RELAXED);
	if (off + need > sizeof(boot_pool))
		return NULL;
	memcpy(boot_pool + off, &n, sizeof(n));
	return boot_pool + off + BOOT_HDR;
}

static inline bool is_boot(const void *p)
{
	return (const char *)p >= boot_pool && (const char *)p < boot_pool + sizeof(boot_pool);
}

static size_t boot_size(const void *p)
{
	size_t n;
	memcpy(&n, (const char *)p - BOOT_HDR, sizeof(n));
	return n;
}

/* ---- process-wide state ---- */
int g_state;            /* 0 unknown, 1 recording, -1 off */
int g_sock = -1;        /* the channel to the recorder (ring.h) */
ino_t g_sock_ino;       /* its inode: the number may be reused if the program closes it */
pid_t g_pid, g_recorder;
static uint64_t g_nonce;
static uint64_t g_seq;         /* per process image; atomically incremented */
static uint64_t g_ring_ids;    /* ring ids of this image */
uint64_t g_ring_bytes;  /* bytes of rings this process holds */
static uintptr_t g_self_lo, g_self_hi; /* our own text, skipped in stacks */
static pthread_key_t g_key;
static bool g_key_ok;
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
/* CPython in this process (include/kiln/python.h): its evaluation loop's
 * text, where the thread's state is found, and the offsets to read */
static bool g_py;
static uintptr_t g_eval_lo, g_eval_hi;
static void *(*g_py_tstate)(void);
static struct kiln_py_offsets g_pyo;
static const char *g_py_rt;    /* _PyRuntime */
int g_py_fin_sent;      /* RING_PYFIN written in this image */

/* ---- Python's allocator domains (KILN_PYDOMAINS=1) ----
 * pymalloc serves small objects from arenas it maps itself: malloc never
 * sees them. As memray's --trace-python-allocators and tracemalloc do, the
 * MEM and OBJ domains are wrapped (PyMem_SetAllocator) once CPython has set
 * them up (_PyRuntime.preinitialized: before that a PYTHONMALLOC setting
 * would replace the wrappers), by the thread that initializes it. Each
 * wrapper forwards first, under the recursion guard (a large object's
 * PyMem_RawMalloc underneath is not counted again), and records second;
 * a free is recorded before it is forwarded. A block allocated through
 * malloc before the wrap and freed through a wrapper is one block either
 * way: events are keyed by address. */
typedef struct {
	void *ctx;
	void *(*malloc)(void *ctx, size_t size);
	void *(*calloc)(void *ctx, size_t nelem, size_t elsize);
	void *(*realloc)(void *ctx, void *ptr, size_t new_size);
	void (*free)(void *ctx, void *ptr);
} py_allocator;
enum { PYD_RAW, PYD_MEM, PYD_OBJ };
static py_allocator g_pyd_old[3];
static void (*g_py_getalloc)(int domain, py_allocator *a);
static void (*g_py_setalloc)(int domain, py_allocator *a);
static bool g_pyd_want;   /* asked for */
static int g_pyd_state;   /* 0 not yet, 1 wrapped, -1 never (no API) */

static void python_domains_wrap(void);


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
	uintptr_t stack_lo, stack_hi;
	uint32_t agen;            /* the attach generation its ring belongs to */
	uint64_t *pycodes;        /* PYCODE_SET code objects already sent (0: empty) */
	uint32_t pycode_gen;      /* the image generation they were sent in */
	uint32_t events;          /* while attached: a look at the recorder every 4096 events */
};

TLS int t_guard;
static TLS struct tstate t_state;

/* ---- small helpers that allocate nothing ---- */
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


/* Whether p is a symbol's canonical PLT entry in a module that does not
 * define it (a program built without -fPIE taking the function's address). */
static bool is_plt_alias(void *p)
{
	Dl_info di;
	const ElfW(Sym) *sym = NULL;
	return p && dladdr1(p, &di, (void **)&sym, RTLD_DL_SYMENT) && sym && sym->st_shndx == SHN_UNDEF;
}

struct def_ctx {
	const char *name;
	void *found;
};

static int def_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct def_ctx *c = arg;
	(void)size;
	if (!info->dlpi_name || !info->dlpi_name[0] || strstr(info->dlpi_name, "libkiln_shim"))
		return 0; /* the program itself (its PLT entry is what we avoid), the shim */
	void *h = dlopen(info->dlpi_name, RTLD_LAZY | RTLD_NOLOAD);
	if (!h)
		return 0;
	void *p = dlsym(h, c->name);
	dlclose(h);
	if (p && !is_plt_alias(p)) {
		c->found = p;
		return 1;
	}
	return 0;
}

/* What name resolves to in handle (RTLD_NEXT when preloaded, RTLD_DEFAULT
 * when attached, where nothing comes after the shim). A program built
 * without -fPIE that takes a function's address exports its PLT entry as
 * that function: calling it would jump through the GOT slot the shim
 * patched, back into the shim. Then the libraries are searched in order
 * for the definition. */
void *real_sym(void *handle, const char *name)
{
	void *p = dlsym(handle, name);
	if (handle != RTLD_DEFAULT || !is_plt_alias(p))
		return p;
	struct def_ctx c = {name, NULL};
	dl_iterate_phdr(def_cb, &c);
	return c.found;
}

/* The allocator's functions as handle finds them (see real_sym). */
void resolve_alloc(void *handle)
{
	real_malloc = (malloc_fn)real_sym(handle, "malloc");
	real_calloc = (calloc_fn)real_sym(handle, "calloc");
	real_realloc = (realloc_fn)real_sym(handle, "realloc");
	real_free = (free_fn)real_sym(handle, "free");
	real_free_sized = (free_sized_fn)real_sym(handle, "free_sized");
	real_free_aligned_sized = (free_aligned_sized_fn)real_sym(handle, "free_aligned_sized");
	real_posix_memalign = (posix_memalign_fn)real_sym(handle, "posix_memalign");
	real_aligned_alloc = (memalign_fn)real_sym(handle, "aligned_alloc");
	real_memalign = (memalign_fn)real_sym(handle, "memalign");
	real_valloc = (valloc_fn)real_sym(handle, "valloc");
	real_pvalloc = (valloc_fn)real_sym(handle, "pvalloc");
}

/* What glibc allocates inside dlsym here (an error message for a function
 * this libc lacks, its lookup's own buffers) is kiln's, not the program's:
 * never recorded. */
void resolve_real(void)
{
	t_guard++;
	resolve_alloc(RTLD_NEXT);
	real_execve = (execve_fn)dlsym(RTLD_NEXT, "execve");
	real_execvpe = (execve_fn)dlsym(RTLD_NEXT, "execvpe");
	real_posix_spawn = (spawn_fn)dlsym(RTLD_NEXT, "posix_spawn");
	real_posix_spawnp = (spawn_fn)dlsym(RTLD_NEXT, "posix_spawnp");
	real_system = (system_fn)dlsym(RTLD_NEXT, "system");
	real_popen = (popen_fn)dlsym(RTLD_NEXT, "popen");
	t_guard--;
}

static void thread_end(void *arg);

/* Is this a CPython kiln reads? Its symbols are looked up once, at start
 * (the interpreter or libpython is loaded by then); a Python embedded later
 * by dlopen is not read, and its stacks stay native. */
static void python_init(void)
{
	const unsigned long *ver = dlsym(RTLD_DEFAULT, "Py_Version");
	void *ev = dlsym(RTLD_DEFAULT, "_PyEval_EvalFrameDefault");
	void *gt = dlsym(RTLD_DEFAULT, "PyGILState_GetThisThreadState");
	const unsigned char *rt = dlsym(RTLD_DEFAULT, "_PyRuntime");
	if (!ver || !ev || !gt || !rt)
		return;
	const struct kiln_py_offsets *t = kiln_py_table((uint32_t)*ver);
	if (!t)
		return;
	g_pyo = *t;
	if (t->version >= 0x30d && kiln_py_from_debug(rt, t, &g_pyo) < 0)
		return;
	Dl_info info;
	const ElfW(Sym) *sym = NULL;
	if (!dladdr1(ev, &info, (void **)&sym, RTLD_DL_SYMENT) || !sym || !sym->st_size)
		return;
	g_py_rt = (const char *)rt;
	g_eval_lo = (uintptr_t)ev;
	g_eval_hi = g_eval_lo + sym->st_size;
	g_py_tstate = (void *(*)(void))gt;
	g_py = true;
	const char *dom = getenv("KILN_PYDOMAINS");
	if (dom && *dom == '1' && !g_attached) {
		/* a running Python (attach) keeps its allocators: wrapping them
		 * while other threads allocate through them would race */
		g_py_getalloc = (void (*)(int, py_allocator *))dlsym(RTLD_DEFAULT, "PyMem_GetAllocator");
		g_py_setalloc = (void (*)(int, py_allocator *))dlsym(RTLD_DEFAULT, "PyMem_SetAllocator");
		g_pyd_want = true;
	}
}

/* This thread's Python frames, innermost first, as ring.h's two words each
 * (code object | flags, instruction index): a few loads a frame, no call
 * but the one that finds the thread's state (no allocation, no lock). The
 * thread itself is the only writer of its frame chain, and it is here. */
static int python_frames(uint64_t *w, int max, bool *truncated)
{
	char *ts = g_py_tstate();
	if (!ts)
		return 0;
	const struct kiln_py_offsets *o = &g_pyo;
	uintptr_t f;
	if (o->ts_current_frame != KILN_PY_NONE) {
		f = *(uintptr_t *)(ts + o->ts_current_frame);
	} else {
		uintptr_t cf = *(uintptr_t *)(ts + o->ts_cframe);
		if (!cf)
			return 0;
		f = *(uintptr_t *)(cf + o->cf_current);
	}
	int n = 0;
	for (int steps = 0; f && steps < 4096; steps++) {
		if (n == max) {
			*truncated = true;
			return n;
		}
		struct kiln_py_frame d;
		kiln_py_frame_read((const unsigned char *)f, o, &d);
		if (d.cstack) { /* the frames before it are one loop call's */
			if (n && !(w[2 * (n - 1)] & KILN_PY_ENTRY)) {
				w[2 * (n - 1)] |= KILN_PY_ENTRY;
			} else {
				w[2 * n] = KILN_PY_TAG | KILN_PY_ENTRY;
				w[2 * n + 1] = 0;
				n++;
			}
		} else {
			w[2 * n] = KILN_PY_TAG | (d.entry ? KILN_PY_ENTRY : 0) | (d.code & KILN_PY_ADDR_MASK);
			/* the code object's first line rides along: the recorder,
			 * reading the object later, checks it is still the same */
			uint32_t first = (uint32_t)*(const int32_t *)(d.code + o->co_firstlineno);
			w[2 * n + 1] = (uint64_t)first << 32 | d.lasti;
			n++;
		}
		f = d.previous;
	}
	if (n)
		w[2 * (n - 1)] |= KILN_PY_ENTRY;
	return n;
}

static uint32_t g_image_gen; /* bumped with each new image: what threads sent before is unknown to its recorder */

void new_image(void)
{
	__atomic_add_fetch(&g_image_gen, 1, __ATOMIC_RELAXED);
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	g_pid = getpid();
	g_nonce = ((uint64_t)g_pid << 32) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uintptr_t)&ts;
	__atomic_store_n(&g_seq, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&g_ring_ids, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&g_ring_bytes, 0, __ATOMIC_RELAXED);
}

/* Forget this thread's stack ids: a new thread chain starts them at 0. A
 * new generation empties every slot at once (no write to the cache: after
 * fork its pages stay shared with the parent's). */
static void stack_cache_reset(struct tstate *t)
{
	t->next_id = 0;
	t->arena_used = 0;
	if (++t->gen == 0 && t->slots) { /* wrapped: old slots could look current */
		memset(t->slots, 0, sizeof(*t->slots) * CACHE_SLOTS);
		t->gen = 1;
	}
}

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

/* fork: nothing the forking thread allocates between our prepare handler
 * and the end of fork (glibc's own fork work) is recorded; the child starts
 * an image of its own. Rings are MADV_DONTFORK: the child maps none of its
 * parent's. */
static void thread_caches(struct tstate *t);

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
static uint64_t g_loss_unsent;

static void atfork_child(void)
{
	t_guard--;
	if (g_nofollow) {
		/* not followed: this child records nothing */
		__atomic_store_n(&g_state, -1, __ATOMIC_RELEASE);
		return;
	}
	struct tstate *t = &t_state;
	t->hdr = NULL; /* the parent's ring: not mapped here */
	t->data = NULL;
	t->ring_bytes = 0;
	t->dropping = t->stopped = false;
	t->noring = 0;
	g_loss_unsent = 0; /* the parent's to tell */
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

static bool sock_is_ours(void)
{
	struct stat st;
	return g_sock >= 0 && fstat(g_sock, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_ino == g_sock_ino;
}

/* The channel: the inherited socket named by $KILN_FD ("FD:INODE"), or, if
 * the program closed it, a new connection to $KILN_SOCK. */
static bool channel_open(void)
{
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
	const char *path = getenv("KILN_SOCK");
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (!path || !*path || strlen(path) >= sizeof(a.sun_path))
		return false;
	memcpy(a.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	struct stat st;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || fstat(fd, &st) < 0) {
		close(fd);
		return false;
	}
	g_sock = fd;
	g_sock_ino = st.st_ino;
	return true;
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

struct tstate *thread_state(void);

static void init_once(void)
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

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}


bool recorder_alive(void)
{
	if (g_recorder_gone)
		return false;
	struct pollfd p = {g_sock, 0, 0};
	bool hup = g_sock >= 0 && poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR | POLLNVAL));
	if (hup || (g_recorder > 0 && kill(g_recorder, 0) < 0 && errno == ESRCH)) {
		g_recorder_gone = 1;
		__atomic_store_n(&g_state, -1, __ATOMIC_RELEASE);
		attach_lost_recorder();
		return false;
	}
	return true;
}

/* Send one message (with a descriptor, or -1). The recorder may be slow to
 * read (or stopped): retry for at most KILN_RING_WAIT_NS. */
bool channel_send(uint16_t type, uint64_t cause, uint64_t count, int fd)
{
	if (!sock_is_ours())
		return false;
	struct kiln_msg m = {.magic = KILN_MSG_MAGIC, .type = type, .version = KILN_RING_VERSION,
			     .pid = (uint32_t)g_pid, .tid = (uint32_t)gettid_raw(), .cause = cause, .count = count};
	struct iovec iov = {&m, sizeof(m)};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	if (fd >= 0) {
		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.buf;
		mh.msg_controllen = sizeof(ctl.buf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
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

static void loss_send_noring(uint64_t n)
{
	if (!channel_send(KILN_MSG_LOSS, HL_NO_RING, n, -1) && n)
		__atomic_add_fetch(&g_loss_unsent, n, __ATOMIC_RELAXED);
}

static void loss_carry(struct kiln_ring_hdr *h)
{
	uint64_t n = __atomic_exchange_n(&g_loss_unsent, 0, __ATOMIC_ACQ_REL);
	if (n)
		__atomic_add_fetch(&h->unsent, n, __ATOMIC_RELEASE);
}

static inline uint64_t ring_size(uint64_t words)
{
	return KILN_RING_HDR_SIZE + 8 * words;
}

/* Make a ring of words words for this thread (continuing prev_id, or a new
 * thread chain when 0) and hand it to the recorder. */
static bool ring_make(struct tstate *t, uint64_t words, uint64_t prev_id)
{
	size_t size = ring_size(words);
	int fd = (int)syscall(SYS_memfd_create, "kiln-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return false;
	if (ftruncate(fd, (off_t)size) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		close(fd);
		return false;
	}
	void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED) {
		close(fd);
		return false;
	}
	madvise(m, size, MADV_DONTFORK); /* a forked child maps none of our rings */
	struct kiln_ring_hdr *h = m;
	h->version = KILN_RING_VERSION;
	h->hdr_size = KILN_RING_HDR_SIZE;
	h->pid = (uint32_t)g_pid;
	h->tid = (uint32_t)gettid_raw();
	h->ppid = (uint32_t)getppid();
	h->nonce = g_nonce;
	h->words = words;
	h->ring_id = __atomic_add_fetch(&g_ring_ids, 1, __ATOMIC_RELAXED);
	h->prev_id = prev_id;
	h->unsent = __atomic_exchange_n(&g_loss_unsent, 0, __ATOMIC_ACQ_REL);
	__atomic_store_n(&h->magic, KILN_RING_MAGIC, __ATOMIC_RELEASE);
	bool sent = channel_send(KILN_MSG_RING, 0, 0, fd);
	close(fd);
	if (!sent) {
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
static void count_dropped(struct tstate *t, uint64_t events)
{
	if (t->hdr)
		__atomic_store_n(&t->hdr->dropped, t->hdr->dropped + events, __ATOMIC_RELEASE);
}

static void thread_end(void *arg)
{
	struct tstate *t = &t_state;
	t_guard++;
	if (t->noring && g_state > 0)
		loss_send_noring(t->noring);
	t->noring = 0;
	ring_retire(t);
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
	if (t->pycodes) {
		munmap(t->pycodes, sizeof(uint64_t) * PYCODE_SET);
		t->pycodes = NULL;
	}
	t->destructs++;
	t_guard--;
}

static inline bool ring_has_room(struct tstate *t, uint64_t n)
{
	return t->mask + 1 - (t->head - t->tail) >= n;
}

/* Room for n words. A full ring grows; past the budget the thread waits for
 * the recorder; once it drained nothing for KILN_RING_WAIT_NS, drops (the caller counts)
 * until the recorder catches up. False when nothing may be written. */
static bool ring_reserve(struct tstate *t, uint64_t n)
{
	if (likely(ring_has_room(t, n)))
		return true;
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

static inline void ring_put(struct tstate *t, uint64_t i, uint64_t w)
{
	t->data[(t->head + i) & t->mask] = w;
}

static inline void ring_publish(struct tstate *t, uint64_t n)
{
	t->head += n;
	__atomic_store_n(&t->hdr->head, t->head, __ATOMIC_RELEASE);
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

/* The thread's stack cache, its CFI rules and its stack's bounds (made once
 * per thread; a forked child inherits its parent thread's). */
static void thread_caches(struct tstate *t)
{
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
		thread_stack_bounds(t);
	} else {
		if (rl != MAP_FAILED)
			munmap(rl, sizeof(struct cfi_rule) * CFI_RULES);
		if (s != MAP_FAILED)
			munmap(s, sizeof(*t->slots) * CACHE_SLOTS);
		if (a != MAP_FAILED)
			munmap(a, 8 * (size_t)ARENA_WORDS);
	}
}

struct tstate *thread_state(void)
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

static inline bool same_words(const uint64_t *a, const uint64_t *b, int n)
{
	uint64_t d = 0;
	for (int i = 0; i < n; i++)
		d |= a[i] ^ b[i];
	return d == 0;
}

/* ---- Python code objects' names, sent once per thread (ring.h PYCODE) ---- */

/* Whether this thread sent code's names already in this image; marks it sent. */
static bool pycode_sent(struct tstate *t, uint64_t code)
{
	if (!t->pycodes) {
		void *m = mmap(NULL, sizeof(uint64_t) * PYCODE_SET, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			       -1, 0);
		if (m == MAP_FAILED)
			return true; /* the recorder reads the object itself */
		t->pycodes = m;
		t->pycode_gen = g_image_gen;
	}
	if (t->pycode_gen != g_image_gen) {
		memset(t->pycodes, 0, sizeof(uint64_t) * PYCODE_SET);
		t->pycode_gen = g_image_gen;
	}
	size_t j = (size_t)((code >> 4) * 0x9e3779b97f4a7c15ULL >> 52) & (PYCODE_SET - 1);
	for (int probe = 0; probe < 32; probe++, j = (j + 1) & (PYCODE_SET - 1)) {
		if (t->pycodes[j] == code)
			return true;
		if (!t->pycodes[j]) {
			t->pycodes[j] = code;
			return false;
		}
	}
	return false; /* the set is crowded: send it again rather than not at all */
}

struct pystr {
	const unsigned char *data;
	uint32_t len;
	uint8_t kind;
};

/* A compact str's characters as CPython holds them (no copy, no conversion). */
static bool py_str(uintptr_t obj, struct pystr *s, uint32_t max)
{
	if (!obj)
		return false;
	const char *o = (const char *)obj;
	int64_t len = *(const int64_t *)(o + g_pyo.str_length);
	unsigned kind = 0, at = kiln_py_str_data(*(const uint32_t *)(o + g_pyo.str_state), &g_pyo, &kind);
	if (len < 0 || !at)
		return false;
	s->data = (const unsigned char *)o + at;
	s->len = len > max ? max : (uint32_t)len;
	s->kind = (uint8_t)kind;
	return true;
}

/* Append n bytes to the words written after a PYCODE's four-word head. */
static void put_bytes(struct tstate *t, uint64_t *word, uint64_t *i, const unsigned char *p, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		*word |= (uint64_t)p[k] << (8 * (*i % 8));
		if (++*i % 8 == 0) {
			ring_put(t, 4 + *i / 8 - 1, *word);
			*word = 0;
		}
	}
}

/* Send code's qualified name, file and location table, raw (the recorder
 * decodes them): what it needs to name the frame if the object is freed
 * before it reads it. Nothing is formatted or parsed here. */
static void pycode_define(struct tstate *t, uintptr_t code)
{
	const struct kiln_py_offsets *o = &g_pyo;
	const char *co = (const char *)code;
	struct pystr q = {0}, f = {0};
	if (!py_str(*(const uintptr_t *)(co + o->co_qualname), &q, KILN_PYCODE_QUAL_MAX) &&
	    !py_str(*(const uintptr_t *)(co + o->co_name), &q, KILN_PYCODE_QUAL_MAX))
		return;
	if (!py_str(*(const uintptr_t *)(co + o->co_filename), &f, KILN_PYCODE_FILE_MAX))
		f = (struct pystr){NULL, 0, 1};
	uintptr_t lt = *(const uintptr_t *)(co + o->co_linetable);
	int64_t tlen = lt ? *(const int64_t *)(lt + o->bytes_size) : 0;
	if (tlen < 0 || tlen > KILN_PYCODE_TABLE_MAX)
		tlen = 0;
	uint64_t bytes = (uint64_t)q.len * q.kind + (uint64_t)f.len * f.kind + (uint64_t)tlen;
	uint64_t words = 4 + (bytes + 7) / 8;
	if (words > (t->mask + 1) / 4 && tlen) { /* a small ring: names only */
		bytes -= (uint64_t)tlen;
		tlen = 0;
		words = 4 + (bytes + 7) / 8;
	}
	if (words > (t->mask + 1) / 4 || !ring_reserve(t, words))
		return; /* the recorder reads the object itself */
	uint32_t first = (uint32_t)*(const int32_t *)(co + o->co_firstlineno);
	ring_put(t, 0, words << 8 | RING_PYCODE);
	ring_put(t, 1, (uint64_t)code);
	ring_put(t, 2, (uint64_t)first << 32 | (uint64_t)q.kind << 8 | f.kind);
	ring_put(t, 3, (uint64_t)q.len | (uint64_t)f.len << 16 | (uint64_t)tlen << 32);
	uint64_t word = 0, i = 0;
	put_bytes(t, &word, &i, q.data, (size_t)q.len * q.kind);
	if (f.len)
		put_bytes(t, &word, &i, f.data, (size_t)f.len * f.kind);
	if (tlen)
		put_bytes(t, &word, &i, (const unsigned char *)lt + o->bytes_sval, (size_t)tlen);
	if (i % 8)
		ring_put(t, 4 + i / 8, word);
	ring_publish(t, words);
}

/* The id of this thread's stack, sending its definition the first time.
 * The walk starts at the caller of the hook (ws): the shim's own frames are
 * never walked. On success the ring has room for one ALLOC event. */
static bool stack_id(struct tstate *t, const struct walk_start *ws, uint64_t *out)
{
	uint32_t foreign_truncated = 0;
	void *ips[SHIM_DEPTH + 8 + 2 * SHIM_PY_MAX];
	int n = -1;
	bool foreign = false;
	if (likely(t->rules && t->stack_hi && ws)) {
		uintptr_t hi = t->stack_hi;
		if (unlikely(ws->sp < t->stack_lo || ws->sp >= t->stack_hi)) {
			/* a coroutine, fiber or signal stack: read no further than
			 * what is mapped above the stack pointer */
			hi = mapped_above(ws->sp);
			foreign = true;
		}
		n = cfi_backtrace(t->rules, ws->ip, ws->sp, ws->bp, hi, false, ips, SHIM_DEPTH + 8);
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
	return true;
}

/* The next sequence number of this process image. */
static inline uint64_t next_seq(void)
{
	return __atomic_fetch_add(&g_seq, 1, __ATOMIC_RELAXED);
}

/* CPython tears its modules down from here on: say so once, before this
 * event, so what was live is the program's leaks and the clean-up is not. */
static __attribute__((noinline)) void python_finalizing(struct tstate *t)
{
	int expected = 0;
	if (!__atomic_compare_exchange_n(&g_py_fin_sent, &expected, 1, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return;
	if (!ring_reserve(t, 2))
		return;
	uint64_t seq = next_seq();
	ring_put(t, 0, seq << 8 | RING_PYFIN);
	ring_put(t, 1, 0);
	ring_publish(t, 2);
	/* The recorder names Python frames by reading their code objects,
	 * which finalization is about to free: wait (at most 2 s) until it has
	 * read everything before this event, every STACK included. */
	uint64_t start = mono_ns();
	for (unsigned spins = 1; __atomic_load_n(&t->hdr->tail, __ATOMIC_ACQUIRE) < t->head; spins++) {
		struct timespec ts = {0, spins < 64 ? 50000 : 500000};
		nanosleep(&ts, NULL);
		if (mono_ns() - start > 2000000000ull || (spins % 64 == 0 && !recorder_alive()))
			break;
	}
}

/* While attached, a look at the recorder at most every 100 ms (asked
 * every 4096 events of a thread): a killed kiln is noticed within a moment
 * of activity and the program's slots are put back. */
static uint64_t g_alive_checked;

static bool recorder_seen_lately(void)
{
	uint64_t now = mono_ns(), last = __atomic_load_n(&g_alive_checked, __ATOMIC_RELAXED);
	if (now - last < 100000000ull)
		return true;
	__atomic_store_n(&g_alive_checked, now, __ATOMIC_RELAXED);
	return recorder_alive();
}

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

static inline void attach_leave(bool att)
{
	if (att)
		__atomic_sub_fetch(&g_inflight, 1, __ATOMIC_SEQ_CST);
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

static __attribute__((noinline)) void record(void *freed, void *p, size_t size, const struct walk_start *ws)
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
		uint64_t seq = next_seq();
		ring_put(t, 0, seq << 8 | RING_FREE);
		ring_put(t, 1, (uint64_t)(uintptr_t)freed);
		ring_publish(t, 2);
	}
	if (p) {
		uint64_t id;
		if (!stack_id(t, ws, &id) || !ring_reserve(t, 4)) {
			count_dropped(t, 1);
			goto out;
		}
		uint64_t seq = next_seq();
		ring_put(t, 0, seq << 8 | RING_ALLOC);
		ring_put(t, 1, (uint64_t)(uintptr_t)p);
		ring_put(t, 2, size);
		ring_put(t, 3, id);
		ring_publish(t, 4);
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
static __attribute__((noinline)) void *realloc_recorded(void *old, size_t n, const struct walk_start *ws,
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
	uint64_t seq = next_seq();
	errno = saved;
	void *p = fn(ctx, old, n);
	saved = errno;
	if (!p && shim_sample_mean)
		shim_sample__restore(old); /* the taken block stays live */
	ring_put(t, 0, seq << 8 | (p ? RING_FREE : RING_NOP));
	ring_put(t, 1, p ? (uint64_t)(uintptr_t)old : 0);
	ring_publish(t, 2);
	attach_leave(att);
	t_guard--;
	if (p && shim_sample__take(p, n))
		record(NULL, p, n, ws);
	errno = saved;
	return p;
}

static inline bool recording(void);

static void *pyd_malloc(void *ctx, size_t n)
{
	const py_allocator *o = &g_pyd_old[(uintptr_t)ctx];
	t_guard++;
	void *p = o->malloc(o->ctx, n);
	t_guard--;
	RECORD_ALLOC(p, n);
	return p;
}

static void *pyd_calloc(void *ctx, size_t n, size_t m)
{
	const py_allocator *o = &g_pyd_old[(uintptr_t)ctx];
	t_guard++;
	void *p = o->calloc(o->ctx, n, m);
	t_guard--;
	RECORD_ALLOC(p, n * m);
	return p;
}

static void *pyd_realloc_fwd(void *ctx, void *old, size_t n)
{
	const py_allocator *o = &g_pyd_old[(uintptr_t)ctx];
	return o->realloc(o->ctx, old, n);
}

static void *pyd_realloc(void *ctx, void *old, size_t n)
{
	if (!recording()) {
		t_guard++;
		void *p = pyd_realloc_fwd(ctx, old, n);
		t_guard--;
		return p;
	}
	CALLER(ws);
	if (!old) {
		t_guard++;
		void *p = pyd_realloc_fwd(ctx, NULL, n);
		t_guard--;
		if (p && shim_sample__take(p, n))
			record(NULL, p, n, &ws);
		return p;
	}
	return realloc_recorded(old, n, &ws, pyd_realloc_fwd, ctx);
}

static void pyd_free(void *ctx, void *p)
{
	const py_allocator *o = &g_pyd_old[(uintptr_t)ctx];
	if (p && recording() && shim_sample__free(p))
		record(p, NULL, 0, NULL);
	t_guard++;
	o->free(o->ctx, p);
	t_guard--;
}

/* Wrap the MEM and OBJ domains, once CPython's allocators are set up. */
static __attribute__((noinline)) void python_domains_wrap(void)
{
	if (!g_py_getalloc || !g_py_setalloc) {
		g_pyd_state = -1;
		return;
	}
	for (int d = PYD_MEM; d <= PYD_OBJ; d++) {
		g_py_getalloc(d, &g_pyd_old[d]);
		py_allocator ours = {(void *)(uintptr_t)d, pyd_malloc, pyd_calloc, pyd_realloc, pyd_free};
		g_py_setalloc(d, &ours);
	}
	__atomic_store_n(&g_pyd_state, 1, __ATOMIC_RELEASE);
}

static void *libc_realloc(void *ctx, void *old, size_t n)
{
	return real_realloc(old, n);
}

static inline bool recording(void)
{
	if (unlikely(g_state == 0) && !t_guard) /* never from inside init_once itself */
		init_once();
	return g_state > 0 && !t_guard;
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
