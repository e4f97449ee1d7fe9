/* The shim's first steps: the real allocation and exec functions looked up
 * (dlsym, then a search past a program's PLT aliases when attached), and
 * the bootstrap pool that serves dlsym's own calloc before they are known.
 */
#include <link.h>
#include "shim/shim_int.h"

malloc_fn real_malloc;
calloc_fn real_calloc;
realloc_fn real_realloc;
free_fn real_free;
free_sized_fn real_free_sized;
free_aligned_sized_fn real_free_aligned_sized;
posix_memalign_fn real_posix_memalign;
memalign_fn real_aligned_alloc, real_memalign;
valloc_fn real_valloc, real_pvalloc;
execve_fn real_execve, real_execvpe;
spawn_fn real_posix_spawn, real_posix_spawnp;
system_fn real_system;
popen_fn real_popen;

/* ---- bootstrap pool for allocations made while resolving the real functions ----
 * Each block carries its size in the 16 bytes before it, so realloc of a
 * pool block copies exactly what it held. */
#define BOOT_HDR 16
char boot_pool[1 << 16] __attribute__((aligned(64)));
static size_t boot_used;

void *boot_alloc(size_t n)
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


size_t boot_size(const void *p)
{
	size_t n;
	memcpy(&n, (const char *)p - BOOT_HDR, sizeof(n));
	return n;
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
