/* ELF images (see image.h): segments, .eh_frame_hdr and build-id parsed
 * once with libelf; symbol names from a sorted table (libdw's own lookup is
 * a linear scan per address). Inlined frames and file:line from DWARF are
 * image_dwarf.c's. */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>
#include "symbols/image_int.h"
#include "util/util.h"

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

void image_load_syms(struct image *img)
{
	size_t cap = 0;
	img->syms_loaded = true;
	if (!img->dw)
		image_dwarf_open(img);
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

const struct image_sym *image_find_sym(struct image *img, uint64_t vaddr)
{
	if (!img->syms_loaded)
		image_load_syms(img);
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
