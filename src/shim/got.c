/* GOT redirection for an attached shim (see got.h). Runs inside the
 * program: no stdio, no malloc (the slot list is an mmap), no lock held
 * while the program runs. Patching and restoring are called by one thread
 * at a time (the one kiln stopped for it, or the dlopen hook under the
 * dynamic linker's own lock), guarded by a flag besides. */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "shim/got.h"

#define MAX_SLOTS 65536

struct slot {
	uintptr_t *addr;
	uintptr_t old, hook; /* what it held, what the shim wrote */
	bool relro;
};

static struct slot *g_slots;
static size_t g_n;
static int g_busy;
/* The thread holding g_busy (0: none), for kiln's injector: a thread stopped
 * while it holds the lock must not be made to call kiln_detach, which takes
 * it (the lock is no recursive one: it would wait for itself). */
__attribute__((visibility("default"))) volatile int kiln_got_owner;

static void owned(void)
{
	kiln_got_owner = (int)syscall(SYS_gettid);
}

static void released(void)
{
	kiln_got_owner = 0;
	__atomic_store_n(&g_busy, 0, __ATOMIC_RELEASE);
}

struct patch_ctx {
	const struct got_hook *hooks;
	size_t nhooks;
	uintptr_t self;
	int patched;
	int busy; /* modules left alone: the dynamic linker is relocating them */
	bool maps_read;
};

/* ---- which pages are writable right now (/proc/self/maps, read once per
 * patch or restore, with plain system calls) ----
 * A module's RELRO pages turn read-only once the dynamic linker has
 * relocated it: writable ones mean a dlopen in another thread is relocating
 * it now, and neither its slots nor their pages' protection are touched. */
struct wrange {
	uintptr_t lo, hi;
};
#define MAX_WRANGES 65536
static struct wrange *g_wr;
static size_t g_nwr;
static bool g_wr_known;

static uintptr_t parse_hex(const char **p, const char *end)
{
	uintptr_t v = 0;
	for (; *p < end; (*p)++) {
		char c = **p;
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
		if (d < 0)
			break;
		v = v << 4 | (uintptr_t)d;
	}
	return v;
}

static void maps_line(const char *l, const char *end)
{
	uintptr_t lo = parse_hex(&l, end);
	if (l >= end || *l++ != '-')
		return;
	uintptr_t hi = parse_hex(&l, end);
	if (end - l < 3 || *l != ' ' || l[2] != 'w' || g_nwr >= MAX_WRANGES)
		return;
	if (g_nwr && g_wr[g_nwr - 1].hi == lo)
		g_wr[g_nwr - 1].hi = hi;
	else
		g_wr[g_nwr++] = (struct wrange){lo, hi};
}

static void writable_load(void)
{
	g_nwr = 0;
	g_wr_known = false;
	if (!g_wr) {
		void *m = mmap(NULL, sizeof(struct wrange) * MAX_WRANGES, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (m == MAP_FAILED)
			return;
		g_wr = m;
	}
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	char buf[8192];
	size_t have = 0;
	bool ok = true;
	for (;;) {
		ssize_t n = read(fd, buf + have, sizeof(buf) - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ok = false;
			break;
		}
		have += (size_t)n;
		size_t start = 0;
		for (size_t i = 0; i < have; i++)
			if (buf[i] == '\n') {
				maps_line(buf + start, buf + i);
				start = i + 1;
			}
		if (start == 0 && have == sizeof(buf)) { /* no line is this long: unknown */
			ok = false;
			break;
		}
		memmove(buf, buf + start, have - start);
		have -= start;
		if (n == 0)
			break;
	}
	close(fd);
	g_wr_known = ok && g_nwr < MAX_WRANGES;
}

/* The page of addr is writable now; true also when that cannot be known
 * (nothing is touched then). */
static bool page_writable(uintptr_t addr)
{
	if (!g_wr_known)
		return true;
	size_t lo = 0, hi = g_nwr;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (g_wr[mid].hi <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < g_nwr && g_wr[lo].lo <= addr;
}

static void slot_write(uintptr_t *addr, uintptr_t v, bool relro)
{
	long pg = sysconf(_SC_PAGESIZE);
	uintptr_t page = (uintptr_t)addr & ~(uintptr_t)(pg - 1);
	if (relro)
		mprotect((void *)page, (size_t)pg, PROT_READ | PROT_WRITE);
	__atomic_store_n(addr, v, __ATOMIC_RELEASE);
	if (relro)
		mprotect((void *)page, (size_t)pg, PROT_READ);
}

static bool slot_known(uintptr_t *addr)
{
	for (size_t i = 0; i < g_n; i++)
		if (g_slots[i].addr == addr)
			return true;
	return false;
}

/* A dynamic-section pointer: glibc relocates most of them in place, the
 * vDSO's and some others are left as ELF addresses. */
static uintptr_t dyn_ptr(uintptr_t v, uintptr_t base)
{
	return v < base ? v + base : v;
}

static void patch_relocs(struct patch_ctx *c, struct dl_phdr_info *info, const ElfW(Rela) *rel, size_t n,
			 const ElfW(Sym) *symtab, const char *strtab, uintptr_t relro_lo, uintptr_t relro_hi)
{
	for (size_t i = 0; i < n; i++) {
		unsigned type = (unsigned)ELF64_R_TYPE(rel[i].r_info);
		if (type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT)
			continue;
		const ElfW(Sym) *s = &symtab[ELF64_R_SYM(rel[i].r_info)];
		if (!s->st_name)
			continue;
		const char *name = strtab + s->st_name;
		for (size_t h = 0; h < c->nhooks; h++) {
			if (strcmp(name, c->hooks[h].name))
				continue;
			uintptr_t *addr = (uintptr_t *)(info->dlpi_addr + rel[i].r_offset);
			if (g_n >= MAX_SLOTS || slot_known(addr))
				break;
			bool relro = (uintptr_t)addr >= relro_lo && (uintptr_t)addr < relro_hi;
			g_slots[g_n] = (struct slot){
				.addr = addr, .old = *addr, .hook = (uintptr_t)c->hooks[h].hook, .relro = relro};
			g_n++;
			slot_write(addr, (uintptr_t)c->hooks[h].hook, relro);
			c->patched++;
			break;
		}
	}
}

static int patch_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct patch_ctx *c = arg;
	(void)size;
	/* which pages are writable, read once inside the iteration: the list
	 * of modules cannot change while it runs (its lock is held), so no
	 * module is newer than what was read */
	if (!c->maps_read) {
		writable_load();
		c->maps_read = true;
	}
	const ElfW(Dyn) *dyn = NULL;
	uintptr_t relro_lo = 0, relro_hi = 0, lo = UINTPTR_MAX, hi = 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type == PT_DYNAMIC)
			dyn = (const ElfW(Dyn) *)(info->dlpi_addr + ph->p_vaddr);
		else if (ph->p_type == PT_GNU_RELRO) {
			/* the whole pages the dynamic linker makes read-only */
			uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
			relro_lo = (info->dlpi_addr + ph->p_vaddr) & ~(pg - 1);
			relro_hi = (info->dlpi_addr + ph->p_vaddr + ph->p_memsz) & ~(pg - 1);
		} else if (ph->p_type == PT_LOAD) {
			uintptr_t a = info->dlpi_addr + ph->p_vaddr;
			if (a < lo)
				lo = a;
			if (a + ph->p_memsz > hi)
				hi = a + ph->p_memsz;
		}
	}
	if (!dyn || (c->self >= lo && c->self < hi))
		return 0; /* no dynamic section, or the shim itself */
	const char *nm = info->dlpi_name;
	if (nm && strstr(nm, "/ld-linux"))
		return 0; /* the dynamic linker allocates through its own pointers */
	if (relro_hi > relro_lo && page_writable(relro_lo)) {
		c->busy++; /* being relocated: its dlopen, once done, patches it */
		return 0;
	}
	uintptr_t base = info->dlpi_addr;
	const ElfW(Rela) *jmprel = NULL, *rela = NULL;
	size_t pltsz = 0, relasz = 0;
	const ElfW(Sym) *symtab = NULL;
	const char *strtab = NULL;
	for (const ElfW(Dyn) *d = dyn; d->d_tag != DT_NULL; d++) {
		switch (d->d_tag) {
		case DT_JMPREL: jmprel = (const ElfW(Rela) *)dyn_ptr(d->d_un.d_ptr, base); break;
		case DT_PLTRELSZ: pltsz = d->d_un.d_val; break;
		case DT_RELA: rela = (const ElfW(Rela) *)dyn_ptr(d->d_un.d_ptr, base); break;
		case DT_RELASZ: relasz = d->d_un.d_val; break;
		case DT_SYMTAB: symtab = (const ElfW(Sym) *)dyn_ptr(d->d_un.d_ptr, base); break;
		case DT_STRTAB: strtab = (const char *)dyn_ptr(d->d_un.d_ptr, base); break;
		default: break;
		}
	}
	if (!symtab || !strtab)
		return 0;
	if (jmprel)
		patch_relocs(c, info, jmprel, pltsz / sizeof(ElfW(Rela)), symtab, strtab, relro_lo, relro_hi);
	if (rela)
		patch_relocs(c, info, rela, relasz / sizeof(ElfW(Rela)), symtab, strtab, relro_lo, relro_hi);
	return 0;
}

int got__patch(const struct got_hook *hooks, size_t n, const void *self)
{
	if (!g_slots) {
		void *m = mmap(NULL, sizeof(struct slot) * MAX_SLOTS, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (m == MAP_FAILED)
			return -ENOMEM;
		g_slots = m;
	}
	int expected = 0;
	if (!__atomic_compare_exchange_n(&g_busy, &expected, 1, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return 0;
	owned();
	struct patch_ctx c = {.hooks = hooks, .nhooks = n, .self = (uintptr_t)self};
	dl_iterate_phdr(patch_cb, &c);
	released();
	return c.patched;
}

struct range_ctx {
	uintptr_t addr;
	bool found;
};

/* addr lies in one of the module's loaded segments. */
static bool in_module(const struct dl_phdr_info *info, uintptr_t addr)
{
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t a = info->dlpi_addr + ph->p_vaddr;
		if (ph->p_type == PT_LOAD && addr >= a && addr < a + ph->p_memsz)
			return true;
	}
	return false;
}

static int range_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct range_ctx *c = arg;
	(void)size;
	c->found = in_module(info, c->addr);
	return c->found;
}

static bool slot_loaded(const uintptr_t *addr)
{
	struct range_ctx c = {.addr = (uintptr_t)addr};
	dl_iterate_phdr(range_cb, &c);
	return c.found;
}

static void lock(void)
{
	int expected = 0;
	while (!__atomic_compare_exchange_n(&g_busy, &expected, 1, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
		expected = 0;
		usleep(100);
	}
	owned();
}

static void prune_locked(void)
{
	size_t k = 0;
	for (size_t i = 0; i < g_n; i++)
		if (slot_loaded(g_slots[i].addr))
			g_slots[k++] = g_slots[i];
	g_n = k;
}

void got__prune(void)
{
	if (!g_n)
		return;
	lock();
	prune_locked();
	released();
}

struct restore_ctx {
	int restored;
	bool maps_read;
};

/* Put back the slots inside one loaded module. Called by dl_iterate_phdr,
 * which holds the loader's list lock: the module cannot be unmapped by a
 * dlclose meanwhile (a slot written outside it could be). */
static int restore_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct restore_ctx *c = arg;
	(void)size;
	if (!c->maps_read) { /* inside the iteration, as patch_cb */
		writable_load();
		c->maps_read = true;
	}
	for (size_t i = 0; i < g_n; i++) {
		struct slot *sl = &g_slots[i];
		uintptr_t a = (uintptr_t)sl->addr;
		if (!sl->addr || !in_module(info, a))
			continue;
		/* only a slot that still holds the shim's hook, in a module
		 * that is not being relocated now (a read-only page when
		 * patched, writable now: another module at that place) */
		if (!(sl->relro && page_writable(a)) && __atomic_load_n(sl->addr, __ATOMIC_ACQUIRE) == sl->hook) {
			slot_write(sl->addr, sl->old, sl->relro);
			c->restored++;
		}
		sl->addr = NULL;
	}
	return 0;
}

int got__restore(void)
{
	lock();
	struct restore_ctx c = {0};
	dl_iterate_phdr(restore_cb, &c);
	g_n = 0; /* slots of modules unloaded since went with them */
	released();
	return c.restored;
}

size_t got__count(void)
{
	return g_n;
}
