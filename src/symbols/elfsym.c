/* One symbol of an ELF file looked up with pread: the headers, then .dynsym
 * and .symtab with their string tables, each bounded. The file is never
 * mapped (a file another user truncates cannot SIGBUS kiln) nor copied (a
 * 1 GiB executable costs what its symbol tables cost). */
#include <elf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "symbols/elfsym.h"
#include "util/util.h"

#define TABLE_MAX ((size_t)64 << 20) /* a symbol or string table read, at most */

static bool rd(int fd, uint64_t off, void *out, size_t n)
{
	return pread(fd, out, n, (off_t)off) == (ssize_t)n;
}

static void *rd_alloc(int fd, uint64_t off, uint64_t n, uint64_t fsize)
{
	if (!n || n > TABLE_MAX || off > fsize || fsize - off < n)
		return NULL;
	void *p = xmalloc((size_t)n);
	if (!rd(fd, off, p, (size_t)n)) {
		free(p);
		return NULL;
	}
	return p;
}

static bool header(int fd, Elf64_Ehdr *eh, uint64_t *fsize)
{
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || !rd(fd, 0, eh, sizeof(*eh)))
		return false;
	*fsize = (uint64_t)st.st_size;
	return !memcmp(eh->e_ident, ELFMAG, SELFMAG) && eh->e_ident[EI_CLASS] == ELFCLASS64 &&
	       eh->e_ident[EI_DATA] == ELFDATA2LSB;
}

int elfsym__lookup(int fd, const char *name, uint64_t *value, uint64_t *size)
{
	Elf64_Ehdr eh;
	uint64_t fsize;
	if (!header(fd, &eh, &fsize) || eh.e_shentsize != sizeof(Elf64_Shdr) || !eh.e_shnum || eh.e_shnum > 4096)
		return -ENOEXEC;
	Elf64_Shdr *sh = rd_alloc(fd, eh.e_shoff, (uint64_t)eh.e_shnum * sizeof(Elf64_Shdr), fsize);
	if (!sh)
		return -ENOEXEC;
	int rc = -ENOENT;
	size_t nlen = strlen(name);
	for (int pass = 0; pass < 2 && rc; pass++) {
		uint32_t want = pass == 0 ? SHT_DYNSYM : SHT_SYMTAB;
		for (unsigned i = 0; i < eh.e_shnum && rc; i++) {
			if (sh[i].sh_type != want || sh[i].sh_entsize != sizeof(Elf64_Sym) || sh[i].sh_link >= eh.e_shnum)
				continue;
			const Elf64_Shdr *ss = &sh[sh[i].sh_link];
			Elf64_Sym *syms = rd_alloc(fd, sh[i].sh_offset, sh[i].sh_size, fsize);
			char *str = rd_alloc(fd, ss->sh_offset, ss->sh_size, fsize);
			size_t nsym = syms ? sh[i].sh_size / sizeof(Elf64_Sym) : 0;
			for (size_t k = 0; str && k < nsym; k++) {
				const Elf64_Sym *s = &syms[k];
				if (s->st_shndx == SHN_UNDEF || !s->st_value || s->st_name >= ss->sh_size ||
				    ss->sh_size - s->st_name <= nlen)
					continue;
				const char *nm = str + s->st_name;
				/* the name, whole (a version suffix "@..." allowed) */
				if (!memcmp(nm, name, nlen) && (nm[nlen] == 0 || nm[nlen] == '@')) {
					*value = s->st_value;
					*size = s->st_size;
					rc = 0;
					break;
				}
			}
			free(syms);
			free(str);
		}
	}
	free(sh);
	return rc;
}

int elfsym__bias(int fd, uint64_t start, uint64_t pgoff, uint64_t *bias)
{
	Elf64_Ehdr eh;
	uint64_t fsize;
	if (!header(fd, &eh, &fsize) || eh.e_phentsize != sizeof(Elf64_Phdr) || !eh.e_phnum || eh.e_phnum > 4096)
		return -ENOEXEC;
	Elf64_Phdr *ph = rd_alloc(fd, eh.e_phoff, (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr), fsize);
	if (!ph)
		return -ENOEXEC;
	int rc = -ENOENT;
	for (unsigned i = 0; i < eh.e_phnum && rc; i++) {
		const Elf64_Phdr *p = &ph[i];
		if (p->p_type != PT_LOAD)
			continue;
		uint64_t off0 = p->p_offset & ~0xfffULL;
		if (pgoff >= off0 && pgoff < p->p_offset + (p->p_filesz ? p->p_filesz : 1)) {
			*bias = start - (p->p_vaddr - p->p_offset + pgoff);
			rc = 0;
		}
	}
	free(ph);
	return rc;
}
