/* GOT redirection for an attached shim (see got.h). Runs inside the
 * program: no stdio, no malloc (the slot list is an mmap), no lock held
 * while the program runs. Patching and restoring are called by one thread
 * at a time (the one kiln stopped for it, or the dlopen hook under the
 * dynamic linker's own lock), guarded by a flag besides. */
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "shim/got.h"

#define MAX_SLOTS 65536

struct slot {
	uintptr_t *addr;
	uintptr_t old;
	bool relro;
};

static struct slot *g_slots;
static size_t g_n;
static int g_busy;

struct patch_ctx {
	const struct got_hook *hooks;
	size_t nhooks;
	uintptr_t self;
	int patched;
};

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
			g_slots[g_n] = (struct slot){.addr = addr, .old = *addr, .relro = relro};
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
	const ElfW(Dyn) *dyn = NULL;
	uintptr_t relro_lo = 0, relro_hi = 0, lo = UINTPTR_MAX, hi = 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type == PT_DYNAMIC)
			dyn = (const ElfW(Dyn) *)(info->dlpi_addr + ph->p_vaddr);
		else if (ph->p_type == PT_GNU_RELRO) {
			relro_lo = info->dlpi_addr + ph->p_vaddr;
			relro_hi = relro_lo + ph->p_memsz;
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
	struct patch_ctx c = {.hooks = hooks, .nhooks = n, .self = (uintptr_t)self};
	dl_iterate_phdr(patch_cb, &c);
	__atomic_store_n(&g_busy, 0, __ATOMIC_RELEASE);
	return c.patched;
}

struct range_ctx {
	uintptr_t addr;
	bool found;
};

static int range_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct range_ctx *c = arg;
	(void)size;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t a = info->dlpi_addr + ph->p_vaddr;
		if (ph->p_type == PT_LOAD && c->addr >= a && c->addr < a + ph->p_memsz) {
			c->found = true;
			return 1;
		}
	}
	return 0;
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
	__atomic_store_n(&g_busy, 0, __ATOMIC_RELEASE);
}

int got__restore(void)
{
	lock();
	prune_locked();
	int n = 0;
	for (size_t i = g_n; i-- > 0;) {
		slot_write(g_slots[i].addr, g_slots[i].old, g_slots[i].relro);
		n++;
	}
	g_n = 0;
	__atomic_store_n(&g_busy, 0, __ATOMIC_RELEASE);
	return n;
}

size_t got__count(void)
{
	return g_n;
}
