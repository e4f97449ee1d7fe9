/* ELF images (see image.h): segments, .eh_frame_hdr and build-id parsed
 * once with libelf; symbol names from a sorted table (libdw's own lookup is
 * a linear scan per address); inlined frames and file:line from DWARF. */
#include <dwarf.h>
#include <elfutils/libdwfl.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/auxv.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>
#include "symbols/debugfile.h"
#include "symbols/image.h"
#include "symbols/scopes.h"
#include "util/util.h"

struct image_sym {
	uint64_t addr, size;
	char *name;
};

struct image_dwarf {
	Dwfl *dwfl;
	Dwfl_Module *mod;
	struct scope_cache scopes; /* units indexed as addresses are seen */
};

extern char *__cxa_demangle(const char *mangled, char *buf, size_t *len, int *status);

char *symbols__demangle(const char *name)
{
	if (name[0] == '_' && name[1] == 'Z') {
		int status = 0;
		char *d = __cxa_demangle(name, NULL, NULL, &status);
		if (d && status == 0)
			return d;
		free(d);
	}
	return xstrdup(name);
}

static int parse_elf(struct image *img)
{
	elf_version(EV_CURRENT);
	Elf *elf = elf_memory((char *)img->data, img->size);
	if (!elf)
		return -ENOEXEC;
	int rc = -ENOEXEC;
	GElf_Ehdr eh;
	size_t nph;
	if (elf_kind(elf) != ELF_K_ELF || !gelf_getehdr(elf, &eh) || elf_getphdrnum(elf, &nph) < 0)
		goto out;
	img->elf_type = eh.e_type;
	img->lo = UINT64_MAX;
	for (size_t i = 0; i < nph; i++) {
		GElf_Phdr ph;
		if (!gelf_getphdr(elf, (int)i, &ph))
			continue;
		if (ph.p_type == PT_LOAD) {
			img->loads = xrealloc(img->loads, (img->nloads + 1) * sizeof(*img->loads));
			struct image_load *l = &img->loads[img->nloads++];
			l->vaddr = ph.p_vaddr;
			l->off = ph.p_offset;
			l->filesz = ph.p_filesz;
			l->memsz = ph.p_memsz;
			l->flags = ph.p_flags;
			if (ph.p_vaddr < img->lo)
				img->lo = ph.p_vaddr;
			if (ph.p_vaddr + ph.p_memsz > img->hi)
				img->hi = ph.p_vaddr + ph.p_memsz;
		} else if (ph.p_type == PT_GNU_EH_FRAME) {
			img->eh_hdr_vaddr = ph.p_vaddr;
			img->eh_hdr_size = ph.p_memsz;
		} else if (ph.p_type == PT_NOTE && ph.p_offset + ph.p_filesz <= img->size) {
			/* GNU build-id note */
			const unsigned char *p = img->data + ph.p_offset, *end = p + ph.p_filesz;
			while (p + 12 <= end) {
				uint32_t nsz, dsz, type;
				memcpy(&nsz, p, 4);
				memcpy(&dsz, p + 4, 4);
				memcpy(&type, p + 8, 4);
				const unsigned char *name = p + 12;
				const unsigned char *desc = name + ((nsz + 3) & ~3u);
				if (desc > end || (size_t)(end - desc) < dsz)
					break;
				if (type == NT_GNU_BUILD_ID && nsz == 4 && !memcmp(name, "GNU", 4)) {
					for (uint32_t k = 0; k < dsz && k < 20; k++) {
						static const char hex[] = "0123456789abcdef";
						img->build_id[2 * k] = hex[desc[k] >> 4];
						img->build_id[2 * k + 1] = hex[desc[k] & 15];
					}
				}
				p = desc + ((dsz + 3) & ~3u);
			}
		}
	}
	if (img->nloads)
		rc = 0;
out:
	elf_end(elf);
	return rc;
}

/* Largest file of another user kiln copies (rather than maps) to read. */
#define IMAGE_COPY_MAX (1ull << 30)

/* A private copy of fd's file in a memfd: the file's owner can no longer
 * truncate it under us (which would be SIGBUS in a mapping) nor change it. */
static int copy_to_memfd(int fd, size_t size)
{
	int m = memfd_create("kiln-image", MFD_CLOEXEC);
	if (m < 0)
		return -1;
	off_t off = 0;
	size_t done = 0;
	while (done < size) {
		ssize_t n = sendfile(m, fd, &off, size - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	if (done != size) {
		close(m);
		return -1;
	}
	return m;
}

struct image *image__open_fd(int fd, const char *path)
{
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size < 64) {
		close(fd);
		errno = ENOEXEC;
		return NULL;
	}
	size_t size = (size_t)st.st_size;
	bool trusted = (st.st_uid == 0 || st.st_uid == geteuid()) && !(st.st_mode & (S_IWGRP | S_IWOTH));
	if (!trusted) {
		int m = size <= IMAGE_COPY_MAX ? copy_to_memfd(fd, size) : -1;
		close(fd);
		if (m < 0) {
			errno = EFBIG;
			return NULL;
		}
		fd = m;
	}
	void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED) {
		close(fd);
		return NULL;
	}
	struct image *img = xcalloc(1, sizeof(*img));
	img->path = xstrdup(path);
	img->data = p;
	img->size = size;
	img->mapped = true;
	img->fd = fd;
	int rc = parse_elf(img);
	if (rc < 0) {
		image__free(img);
		errno = -rc;
		return NULL;
	}
	return img;
}

struct image *image__open(const char *path)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	return image__open_fd(fd, path);
}

struct image *image__from_mem(const char *name, const void *p, size_t n)
{
	struct image *img = xcalloc(1, sizeof(*img));
	img->fd = -1;
	img->path = xstrdup(name);
	img->data = xmalloc(n);
	memcpy(img->data, p, n);
	img->size = n;
	int rc = parse_elf(img);
	if (rc < 0) {
		image__free(img);
		errno = -rc;
		return NULL;
	}
	return img;
}

struct image *image__vdso(void)
{
	unsigned long base = getauxval(AT_SYSINFO_EHDR);
	if (!base)
		return NULL;
	/* The vDSO's extent: its section headers end it (they come last). */
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)base;
	size_t size = eh->e_shoff + (size_t)eh->e_shnum * eh->e_shentsize;
	const Elf64_Phdr *ph = (const Elf64_Phdr *)(base + eh->e_phoff);
	for (int i = 0; i < eh->e_phnum; i++)
		if (ph[i].p_type == PT_LOAD && ph[i].p_offset + ph[i].p_filesz > size)
			size = ph[i].p_offset + ph[i].p_filesz;
	if (size > (1u << 20))
		return NULL;
	struct image *img = image__from_mem("[vdso]", (const void *)base, size);
	if (img)
		img->is_vdso = true;
	return img;
}

void image__free(struct image *img)
{
	if (!img)
		return;
	if (img->dw) {
		if (img->dw->dwfl)
			dwfl_end(img->dw->dwfl);
		scope_cache__release(&img->dw->scopes);
		free(img->dw);
	}
	for (size_t i = 0; i < img->nsyms; i++)
		free(img->syms[i].name);
	free(img->syms);
	for (size_t i = 0; i < img->nqsyms; i++)
		free(img->qsyms[i].name);
	free(img->qsyms);
	if (img->mapped)
		munmap(img->data, img->size);
	else
		free(img->data);
	if (img->fd >= 0)
		close(img->fd);
	free(img->loads);
	free(img->path);
	free(img);
}

int image__bias(const struct image *img, uint64_t start, uint64_t pgoff, uint64_t *bias)
{
	for (size_t i = 0; i < img->nloads; i++) {
		const struct image_load *l = &img->loads[i];
		uint64_t off0 = l->off & ~0xfffULL;
		if (pgoff >= off0 && pgoff < l->off + (l->filesz ? l->filesz : 1)) {
			/* vaddr of file offset pgoff in this segment */
			uint64_t v = l->vaddr - l->off + pgoff;
			*bias = start - v;
			return 0;
		}
	}
	return -ENOENT;
}

int image__read(const struct image *img, uint64_t vaddr, void *out, size_t n)
{
	for (size_t i = 0; i < img->nloads; i++) {
		const struct image_load *l = &img->loads[i];
		if (vaddr >= l->vaddr && l->filesz >= n && vaddr - l->vaddr <= l->filesz - n) {
			uint64_t off = l->off + (vaddr - l->vaddr);
			if (off > img->size || img->size - off < n)
				return -EFAULT;
			memcpy(out, img->data + off, n);
			return 0;
		}
	}
	return -EFAULT;
}

static int sym_cmp(const void *a, const void *b)
{
	const struct image_sym *x = a, *y = b;
	if (x->addr != y->addr)
		return x->addr < y->addr ? -1 : 1;
	/* prefer the one with a size, then global names (shorter usually) */
	if ((x->size == 0) != (y->size == 0))
		return x->size == 0 ? 1 : -1;
	return strcmp(x->name, y->name);
}

static void push_sym(struct image_sym **syms, size_t *n, size_t *cap, uint64_t addr, uint64_t size, const char *name)
{
	if (!name || !*name || !addr)
		return;
	ARR_GROW(*syms, *cap, *n + 1);
	(*syms)[*n].addr = addr;
	(*syms)[*n].size = size;
	const char *at = strchr(name, '@'); /* memcpy@@GLIBC_2.14: drop the version */
	(*syms)[*n].name = at && at != name ? xstrndup(name, (size_t)(at - name)) : xstrdup(name);
	(*n)++;
}

static void add_sym(struct image *img, size_t *cap, uint64_t addr, uint64_t size, const char *name)
{
	push_sym(&img->syms, &img->nsyms, cap, addr, size, name);
}

/* libdw's hook for a separate debug file (and a dwz file: an absolute
 * path, CRC 0): debugfile.c's rules, never libdw's standard lookup. */
static int find_debuginfo(Dwfl_Module *mod, void **userdata, const char *modname, Dwarf_Addr base,
			  const char *file_name, const char *link, GElf_Word crc, char **found)
{
	(void)userdata;
	(void)modname;
	(void)base;
	*found = NULL;
	if (link && link[0] == '/' && crc == 0)
		return debugfile__find_alt(link, found);
	const unsigned char *bits;
	GElf_Addr at;
	int n = dwfl_module_build_id(mod, &bits, &at);
	char hex[41] = "";
	static const char digits[] = "0123456789abcdef";
	for (int k = 0; k < n && k < 20; k++) {
		hex[2 * k] = digits[bits[k] >> 4];
		hex[2 * k + 1] = digits[bits[k] & 15];
		hex[2 * k + 2] = 0;
	}
	return debugfile__find(file_name, hex[0] ? hex : NULL, link, crc, found);
}

static void dwarf_open(struct image *img)
{
	static const Dwfl_Callbacks cb = {
		.find_elf = dwfl_build_id_find_elf,
		.find_debuginfo = find_debuginfo,
		.section_address = dwfl_offline_section_address,
	};
	img->dw = xcalloc(1, sizeof(*img->dw));
	scope_cache__init(&img->dw->scopes);
	if (img->is_vdso)
		return;
	Dwfl *dwfl = dwfl_begin(&cb);
	if (!dwfl)
		return;
	dwfl_report_begin(dwfl);
	/* libdw reads the file kiln checked (or its private copy), never the
	 * path again: the path may name another file by now */
	int fd = img->fd >= 0 ? fcntl(img->fd, F_DUPFD_CLOEXEC, 0) : -1;
	if (fd < 0) {
		dwfl_end(dwfl);
		return;
	}
	Dwfl_Module *mod = dwfl_report_elf(dwfl, path_base(img->path), img->path, fd, 0, false);
	dwfl_report_end(dwfl, NULL, NULL);
	if (!mod) {
		dwfl_end(dwfl);
		return;
	}
	img->dw->dwfl = dwfl;
	img->dw->mod = mod;
}

/* Every defined symbol of the image's own .symtab and .dynsym, to fn until
 * it returns true (no debug file, no libdw: fast, and safe beside the
 * prefetch worker). */
static void for_each_sym(const struct image *img, bool (*fn)(void *arg, const GElf_Sym *sym, const char *name),
			 void *arg)
{
	Elf *elf = elf_memory((char *)img->data, img->size);
	Elf_Scn *scn = NULL;
	bool done = false;
	while (elf && !done && (scn = elf_nextscn(elf, scn))) {
		GElf_Shdr sh;
		if (!gelf_getshdr(scn, &sh) || (sh.sh_type != SHT_SYMTAB && sh.sh_type != SHT_DYNSYM) || !sh.sh_entsize)
			continue;
		Elf_Data *d = elf_getdata(scn, NULL);
		for (size_t i = 0; d && !done && i < sh.sh_size / sh.sh_entsize; i++) {
			GElf_Sym sym;
			if (!gelf_getsym(d, (int)i, &sym) || sym.st_shndx == SHN_UNDEF)
				continue;
			const char *name = elf_strptr(elf, sh.sh_link, sym.st_name);
			if (name)
				done = fn(arg, &sym, name);
		}
	}
	elf_end(elf);
}

struct syms_ctx {
	struct image_sym **syms;
	size_t *n, *cap;
};

static bool add_func_sym(void *arg, const GElf_Sym *sym, const char *name)
{
	struct syms_ctx *c = arg;
	int t = GELF_ST_TYPE(sym->st_info);
	if (t == STT_FUNC || t == STT_GNU_IFUNC)
		push_sym(c->syms, c->n, c->cap, sym->st_value, sym->st_size, name);
	return false;
}

/* The function symbols of the image's own symbol tables. */
static void elf_syms(const struct image *img, struct image_sym **syms, size_t *n, size_t *cap)
{
	struct syms_ctx c = {syms, n, cap};
	for_each_sym(img, add_func_sym, &c);
}

struct find_ctx {
	const char *name;
	uint64_t vaddr, size;
	bool found;
};

static bool match_sym(void *arg, const GElf_Sym *sym, const char *name)
{
	struct find_ctx *c = arg;
	if (strcmp(name, c->name))
		return false;
	c->vaddr = sym->st_value;
	c->size = sym->st_size;
	c->found = true;
	return true;
}

/* The value and size of the symbol called name in the image's .symtab or
 * .dynsym (any type). 0, or -ENOENT. */
int image__find_symbol(const struct image *img, const char *name, uint64_t *vaddr, uint64_t *size)
{
	struct find_ctx c = {.name = name};
	for_each_sym(img, match_sym, &c);
	if (!c.found)
		return -ENOENT;
	*vaddr = c.vaddr;
	*size = c.size;
	return 0;
}

/* NAME@plt for each PLT stub, as perf names them: entry i of .plt.sec (or of
 * .plt after its first 16-byte entry) jumps through relocation i of
 * .rela.plt, whose symbol is the function called. */
static void plt_syms(const struct image *img, struct image_sym **syms, size_t *n, size_t *cap)
{
	Elf *elf = elf_memory((char *)img->data, img->size);
	size_t shstrndx;
	if (!elf || elf_getshdrstrndx(elf, &shstrndx) < 0) {
		elf_end(elf);
		return;
	}
	GElf_Shdr plt = {0}, pltsec = {0}, rela = {0}, dsym = {0};
	Elf_Scn *scn = NULL, *rela_scn = NULL, *dsym_scn = NULL;
	while ((scn = elf_nextscn(elf, scn))) {
		GElf_Shdr sh;
		if (!gelf_getshdr(scn, &sh))
			continue;
		const char *name = elf_strptr(elf, shstrndx, sh.sh_name);
		if (!name)
			continue;
		if (!strcmp(name, ".plt"))
			plt = sh;
		else if (!strcmp(name, ".plt.sec"))
			pltsec = sh;
		else if (!strcmp(name, ".rela.plt")) {
			rela = sh;
			rela_scn = scn;
		}
	}
	if (rela_scn && rela.sh_link && (dsym_scn = elf_getscn(elf, rela.sh_link)))
		gelf_getshdr(dsym_scn, &dsym);
	Elf_Data *rd = rela_scn ? elf_getdata(rela_scn, NULL) : NULL, *sd = dsym_scn ? elf_getdata(dsym_scn, NULL) : NULL;
	/* entries: in .plt.sec (IBT) and, after PLT0, in .plt (the lazy
	 * binding path, which .plt.sec's entries start through) */
	const GElf_Shdr *tables[2] = {&pltsec, &plt};
	for (int t = 0; t < 2; t++) {
		uint64_t base = t == 0 ? pltsec.sh_addr : plt.sh_addr + 16;
		uint64_t end = tables[t]->sh_addr + tables[t]->sh_size;
		if (!tables[t]->sh_size || (t == 1 && plt.sh_size <= 16))
			continue;
		for (size_t i = 0; rd && sd && rela.sh_entsize && i < rela.sh_size / rela.sh_entsize; i++) {
			GElf_Rela r;
			GElf_Sym sym;
			if (base + 16 * (i + 1) > end || !gelf_getrela(rd, (int)i, &r) ||
			    !gelf_getsym(sd, (int)GELF_R_SYM(r.r_info), &sym))
				break;
			const char *name = elf_strptr(elf, dsym.sh_link, sym.st_name);
			if (!name || !*name)
				continue;
			size_t before = *n;
			push_sym(syms, n, cap, base + 16 * i, 16, name); /* drops a @VERSION */
			if (*n > before) {
				struct image_sym *e = &(*syms)[*n - 1];
				size_t len = strlen(e->name);
				e->name = xrealloc(e->name, len + 5);
				memcpy(e->name + len, "@plt", 5);
			}
		}
	}
	if (plt.sh_size >= 16) /* PLT0: the jump into the dynamic linker's resolver */
		push_sym(syms, n, cap, plt.sh_addr, 16, "[plt]");
	elf_end(elf);
}

/* Sort by address and drop duplicates at one address (aliases), keeping
 * the first. */
static void syms_sort(struct image_sym *syms, size_t *n)
{
	sort_array(syms, *n, sizeof(*syms), sym_cmp);
	size_t k = 0;
	for (size_t i = 0; i < *n; i++) {
		if (k && syms[k - 1].addr == syms[i].addr) {
			free(syms[i].name);
			continue;
		}
		syms[k++] = syms[i];
	}
	*n = k;
}

static void load_syms(struct image *img)
{
	size_t cap = 0;
	img->syms_loaded = true;
	if (!img->dw)
		dwarf_open(img);
	if (img->dw->mod) {
		int n = dwfl_module_getsymtab(img->dw->mod);
		for (int i = 1; i < n; i++) {
			GElf_Sym sym;
			GElf_Addr addr;
			const char *name = dwfl_module_getsym_info(img->dw->mod, i, &sym, &addr, NULL, NULL, NULL);
			int t = GELF_ST_TYPE(sym.st_info);
			if (name && (t == STT_FUNC || t == STT_GNU_IFUNC) && sym.st_shndx != SHN_UNDEF)
				add_sym(img, &cap, addr, sym.st_size, name);
		}
	} else {
		elf_syms(img, &img->syms, &img->nsyms, &cap);
	}
	plt_syms(img, &img->syms, &img->nsyms, &cap);
	syms_sort(img->syms, &img->nsyms);
}

static const struct image_sym *lookup_sym(const struct image_sym *syms, size_t n, uint64_t vaddr)
{
	size_t lo = upper_bound_u64(syms, n, sizeof(*syms), vaddr);
	if (!lo)
		return NULL;
	const struct image_sym *s = &syms[lo - 1];
	if (s->size && vaddr >= s->addr + s->size)
		return NULL;
	if (!s->size && lo < n && vaddr >= syms[lo].addr)
		return NULL;
	return s;
}

static const struct image_sym *find_sym(struct image *img, uint64_t vaddr)
{
	if (!img->syms_loaded)
		load_syms(img);
	return lookup_sym(img->syms, img->nsyms, vaddr);
}

char *image__quick_name(struct image *img, uint64_t vaddr)
{
	if (!img->qsyms_loaded) {
		size_t cap = 0;
		img->qsyms_loaded = true;
		elf_syms(img, &img->qsyms, &img->nqsyms, &cap);
		plt_syms(img, &img->qsyms, &img->nqsyms, &cap);
		syms_sort(img->qsyms, &img->nqsyms);
	}
	const struct image_sym *s = lookup_sym(img->qsyms, img->nqsyms, vaddr);
	return s ? symbols__demangle(s->name) : NULL;
}

static char *die_name(Dwarf_Die *die)
{
	Dwarf_Attribute attr;
	const char *s = NULL;
	if (dwarf_attr_integrate(die, DW_AT_linkage_name, &attr) ||
	    dwarf_attr_integrate(die, DW_AT_MIPS_linkage_name, &attr))
		s = dwarf_formstring(&attr);
	if (s && s[0] == '_' && s[1] == 'Z')
		return symbols__demangle(s);
	if (dwarf_attr_integrate(die, DW_AT_name, &attr))
		s = dwarf_formstring(&attr);
	return s ? xstrdup(s) : NULL;
}

static const char *cu_file(Dwarf_Die *cudie, Dwarf_Word idx)
{
	Dwarf_Files *files;
	size_t nfiles;
	if (dwarf_getsrcfiles(cudie, &files, &nfiles) != 0 || idx >= nfiles)
		return NULL;
	return dwarf_filesrc(files, idx, NULL, NULL);
}

static bool die_is_call_site(Dwarf_Die *d)
{
	int t = dwarf_tag(d);
	return t == DW_TAG_call_site || t == DW_TAG_GNU_call_site;
}

static bool call_site_origin(Dwarf_Die *site, Dwarf_Die *out)
{
	Dwarf_Attribute attr;
	if (!dwarf_attr(site, DW_AT_call_origin, &attr) && !dwarf_attr(site, DW_AT_abstract_origin, &attr))
		return false;
	return dwarf_formref_die(&attr, out) != NULL;
}

static bool die_is_definition(Dwarf_Die *d)
{
	bool decl = false;
	Dwarf_Attribute attr;
	if (dwarf_attr(d, DW_AT_declaration, &attr))
		dwarf_formflag(&attr, &decl);
	return !decl && dwarf_hasattr(d, DW_AT_low_pc);
}

/* The functions a call entered by tail calls that left no frame: the call
 * site returning to ret (in one of scopes) names its callee; while that
 * callee's body ends in exactly one tail call, follow it (as gdb's tail-call
 * frames do). Frames are added innermost first with inlined = 2. */
/* The call site returning to ret among parent's children, looking into
 * lexical blocks too (a loop's body is one; the scopes index holds only
 * functions and inlined calls). */
static bool find_call_site(Dwarf_Die *parent, uint64_t ret, Dwarf_Die *site, int depth)
{
	Dwarf_Die child;
	if (depth > 16 || dwarf_child(parent, &child) != 0)
		return false;
	do {
		if (dwarf_tag(&child) == DW_TAG_lexical_block) {
			if (find_call_site(&child, ret, site, depth + 1))
				return true;
			continue;
		}
		if (!die_is_call_site(&child))
			continue;
		Dwarf_Attribute attr;
		Dwarf_Addr pc;
		if ((dwarf_attr(&child, DW_AT_call_return_pc, &attr) || dwarf_attr(&child, DW_AT_low_pc, &attr)) &&
		    dwarf_formaddr(&attr, &pc) == 0 && pc == ret) {
			*site = child;
			return true;
		}
	} while (dwarf_siblingof(&child, &child) == 0);
	return false;
}

static int tail_chain(Dwarf_Die *scopes, int ns, uint64_t ret, struct sym_frame *out, int max)
{
	Dwarf_Die site, callee;
	bool found = false;
	for (int i = 0; i < ns && !found; i++) {
		found = find_call_site(&scopes[i], ret, &site, 0);
		int tag = dwarf_tag(&scopes[i]);
		if (tag == DW_TAG_subprogram)
			break;
	}
	if (!found || !call_site_origin(&site, &callee))
		return 0;
	char *names[8];
	int n = 0;
	while (n < 8 && die_is_definition(&callee)) {
		names[n] = die_name(&callee);
		if (!names[n])
			break;
		n++;
		/* exactly one tail call in its body? */
		Dwarf_Die child, next;
		int tails = 0;
		if (dwarf_child(&callee, &child) == 0) {
			do {
				if (!die_is_call_site(&child))
					continue;
				bool tail = false;
				Dwarf_Attribute attr;
				if (dwarf_attr(&child, DW_AT_call_tail_call, &attr) ||
				    dwarf_attr(&child, DW_AT_GNU_tail_call, &attr))
					dwarf_formflag(&attr, &tail);
				if (tail && call_site_origin(&child, &next))
					tails++;
			} while (dwarf_siblingof(&child, &child) == 0);
		}
		if (tails != 1)
			break;
		/* find it again (next holds the last one seen) */
		if (dwarf_child(&callee, &child) != 0)
			break;
		do {
			bool tail = false;
			Dwarf_Attribute attr;
			if (die_is_call_site(&child) &&
			    (dwarf_attr(&child, DW_AT_call_tail_call, &attr) || dwarf_attr(&child, DW_AT_GNU_tail_call, &attr)) &&
			    dwarf_formflag(&attr, &tail) == 0 && tail && call_site_origin(&child, &next))
				break;
		} while (dwarf_siblingof(&child, &child) == 0);
		callee = next;
	}
	/* innermost first */
	int k = 0;
	for (int i = n - 1; i >= 0; i--) {
		if (k < max) {
			out[k].func = names[i];
			out[k].file = xstrdup("");
			out[k].line = 0;
			out[k].inlined = 2;
			k++;
		} else {
			free(names[i]);
		}
	}
	return k;
}

void sym_frame__release(struct sym_frame *f)
{
	free(f->func);
	free(f->file);
	f->func = f->file = NULL;
}

/* ---- prefetch worker ---- */
static pthread_mutex_t pf_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pf_cv = PTHREAD_COND_INITIALIZER;
static struct image **pf_queue;
static size_t pf_len, pf_cap;
static bool pf_started, pf_stop;
static pthread_t pf_thread;
static pid_t pf_tid;

static void *pf_main(void *arg)
{
	/* background work: the profiled program and the recorder's draining
	 * come first on a machine with few cores */
	pthread_mutex_lock(&pf_mu);
	pf_tid = (pid_t)syscall(SYS_gettid);
	pthread_mutex_unlock(&pf_mu);
	setpriority(PRIO_PROCESS, (id_t)pf_tid, 19);
	pthread_mutex_lock(&pf_mu);
	for (;;) {
		while (!pf_len && !pf_stop)
			pthread_cond_wait(&pf_cv, &pf_mu);
		if (!pf_len)
			break;
		struct image *img = pf_queue[0];
		memmove(pf_queue, pf_queue + 1, --pf_len * sizeof(*pf_queue));
		pthread_mutex_unlock(&pf_mu);
		if (!img->dw)
			dwarf_open(img);
		if (img->dw->mod) {
			Dwarf_Addr bias;
			dwfl_module_getdwarf(img->dw->mod, &bias);
		}
		if (!img->syms_loaded)
			load_syms(img);
		pthread_mutex_lock(&pf_mu);
		__atomic_store_n(&img->prefetch, 2, __ATOMIC_RELEASE);
		pthread_cond_broadcast(&pf_cv);
	}
	pthread_mutex_unlock(&pf_mu);
	return NULL;
}

void image__prefetch(struct image *img)
{
	if (img->prefetch || img->is_vdso)
		return;
	pthread_mutex_lock(&pf_mu);
	if (!pf_started && !pf_stop) {
		sigset_t all, old;
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old); /* signals stay with the main thread */
		pf_started = pthread_create(&pf_thread, NULL, pf_main, NULL) == 0;
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	}
	if (pf_started) {
		ARR_GROW(pf_queue, pf_cap, pf_len + 1);
		pf_queue[pf_len++] = img;
		img->prefetch = 1;
		pthread_cond_broadcast(&pf_cv);
	}
	pthread_mutex_unlock(&pf_mu);
}

bool image__loading(const struct image *img)
{
	return __atomic_load_n(&img->prefetch, __ATOMIC_ACQUIRE) == 1;
}

static void prefetch_wait(struct image *img)
{
	pthread_mutex_lock(&pf_mu);
	while (img->prefetch == 1)
		pthread_cond_wait(&pf_cv, &pf_mu);
	pthread_mutex_unlock(&pf_mu);
}

void image__prefetch_hurry(void)
{
	pthread_mutex_lock(&pf_mu);
	for (size_t i = 0; i < pf_len; i++)
		pf_queue[i]->prefetch = 0; /* the caller's first use loads it */
	pf_len = 0;
	if (pf_tid > 0)
		setpriority(PRIO_PROCESS, (id_t)pf_tid, 0); /* where allowed (root): finish what it holds soon */
	pthread_cond_broadcast(&pf_cv);
	pthread_mutex_unlock(&pf_mu);
}

void image__prefetch_stop(void)
{
	pthread_mutex_lock(&pf_mu);
	pf_stop = true;
	pthread_cond_broadcast(&pf_cv);
	bool started = pf_started;
	pf_started = false;
	pthread_mutex_unlock(&pf_mu);
	if (started)
		pthread_join(pf_thread, NULL);
	free(pf_queue);
	pf_queue = NULL;
	pf_len = pf_cap = 0;
}

int image__symbolize(struct image *img, uint64_t vaddr, uint64_t ret, struct sym_frame *out, int max)
{
	if (max <= 0)
		return 0;
	if (img->prefetch == 1)
		prefetch_wait(img);
	if (!img->dw)
		dwarf_open(img);
	int n = 0;
	const char *file = NULL;
	int line = 0;
	if (img->dw->mod) {
		Dwfl_Line *dl = dwfl_module_getsrc(img->dw->mod, vaddr);
		if (dl)
			file = dwfl_lineinfo(dl, NULL, &line, NULL, NULL, NULL);
		Dwarf_Addr bias = 0;
		Dwarf_Die *cudie = dwfl_module_addrdie(img->dw->mod, vaddr, &bias);
		/* the concrete chain of functions at the address, every inlined
		 * level, from the unit's index (built on its first address) */
		Dwarf_Die *scopes = NULL;
		int ns = cudie ? scope_cache__find(&img->dw->scopes, cudie, vaddr - bias, &scopes) : 0;
		char *cur_file = file ? xstrdup(file) : NULL;
		int cur_line = line;
		if (ret && ns > 0)
			n = tail_chain(scopes, ns, ret, out, max / 2);
		for (int i = 0; i < ns && n < max; i++) {
			int tag = dwarf_tag(&scopes[i]);
			if (tag != DW_TAG_subprogram && tag != DW_TAG_inlined_subroutine)
				continue;
			char *name = die_name(&scopes[i]);
			if (!name && tag == DW_TAG_subprogram) {
				const struct image_sym *s = find_sym(img, vaddr);
				if (s)
					name = symbols__demangle(s->name);
			}
			out[n].func = name ? name : xstrdup("");
			out[n].file = cur_file ? cur_file : xstrdup("");
			out[n].line = (uint32_t)(cur_line > 0 ? cur_line : 0);
			out[n].inlined = tag == DW_TAG_inlined_subroutine;
			n++;
			cur_file = NULL;
			if (tag != DW_TAG_inlined_subroutine)
				break;
			Dwarf_Attribute attr;
			Dwarf_Word w;
			cur_line = 0;
			if (dwarf_attr(&scopes[i], DW_AT_call_file, &attr) && dwarf_formudata(&attr, &w) == 0) {
				const char *f = cu_file(cudie, w);
				cur_file = f ? xstrdup(f) : NULL;
			}
			if (dwarf_attr(&scopes[i], DW_AT_call_line, &attr) && dwarf_formudata(&attr, &w) == 0)
				cur_line = (int)w;
		}
		free(cur_file);
		free(scopes);
		/* A chain ending in an inlined frame lacks its outer function
		 * (abstract DIE only): name it from the symbol table. */
		if (n > 0 && out[n - 1].inlined == 1 && n < max) {
			const struct image_sym *s = find_sym(img, vaddr);
			if (s) {
				out[n].func = symbols__demangle(s->name);
				out[n].file = xstrdup("");
				out[n].line = 0;
				out[n].inlined = false;
				n++;
			}
		}
	}
	bool named = false;
	for (int i = 0; i < n; i++)
		named |= out[i].inlined != 2;
	if (!named && n < max) {
		const struct image_sym *s = find_sym(img, vaddr);
		if (!s)
			return n;
		out[n].func = symbols__demangle(s->name);
		out[n].file = xstrdup(file ? file : "");
		out[n].line = (uint32_t)(line > 0 ? line : 0);
		out[n].inlined = 0;
		n++;
	}
	return n;
}
