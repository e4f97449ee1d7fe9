/* An ELF image kiln reads while recording: its loadable segments (to turn a
 * runtime address into an ELF virtual address and back), its .eh_frame_hdr
 * (for the unwinder), its build-id, and, lazily, what is needed to name an
 * address (sorted symbol table, DWARF through libdw). One per file, shared
 * by every process that maps it. */
#ifndef KILN_SYMBOLS_IMAGE_H
#define KILN_SYMBOLS_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct image_load {
	uint64_t vaddr, off, filesz, memsz;
	uint32_t flags;
};

struct image_sym;
struct image_dwarf;

struct image {
	char *path;
	bool is_vdso;
	unsigned char *data; /* the whole file, mapped (or a copy for the vDSO) */
	size_t size;
	bool mapped;
	int fd;              /* the file read (or kiln's private copy), for libdw; -1 none */
	int elf_type;
	struct image_load *loads;
	size_t nloads;
	uint64_t lo, hi;            /* vaddr range covered by loads */
	uint64_t eh_hdr_vaddr;      /* 0 when there is no .eh_frame_hdr */
	uint64_t eh_hdr_size;
	char build_id[41];
	/* symbolization state, built on first use */
	struct image_sym *syms;
	size_t nsyms;
	bool syms_loaded;
	struct image_sym *qsyms; /* image__quick_name's own table (the caller's thread) */
	size_t nqsyms;
	bool qsyms_loaded;
	struct image_dwarf *dw;
	int prefetch; /* 0 not asked, 1 queued or running, 2 done (see image__prefetch) */
};

/* Parse the ELF file open on fd (taken over: closed on failure or by
 * image__free); path is only its name. A file that a user other than root
 * and kiln's own may write is copied first, so it cannot change or shrink
 * under kiln. NULL with errno (ENOEXEC for non-ELF). */
struct image *image__open_fd(int fd, const char *path);
/* Open and parse an ELF file by path (kiln's own, tests). */
struct image *image__open(const char *path);
/* An image from bytes (copied), e.g. the vDSO. */
struct image *image__from_mem(const char *name, const void *p, size_t n);
/* The vDSO of this process, which is the vDSO of every process on this kernel. */
struct image *image__vdso(void);
void image__free(struct image *img);

/* The load bias of a mapping of this image at start with file offset pgoff:
 * runtime address = vaddr + bias. 0 or -ENOENT if pgoff is in no segment. */
int image__bias(const struct image *img, uint64_t start, uint64_t pgoff, uint64_t *bias);
/* Copy n bytes at ELF vaddr from the file. 0 or -EFAULT. */
int image__read(const struct image *img, uint64_t vaddr, void *out, size_t n);

/* The value (ELF vaddr) and size of the symbol called name, of any type,
 * from .symtab or .dynsym. 0, or -ENOENT. */
int image__find_symbol(const struct image *img, const char *name, uint64_t *vaddr, uint64_t *size);

/* One frame of a symbolized address. Strings are malloc'ed. */
struct sym_frame {
	char *func, *file;
	uint32_t line;
	uint8_t inlined; /* 0 a function, 1 inlined into the next, 2 entered by a tail call */
};

/* Name vaddr (already adjusted for return addresses): fills out[] innermost
 * first (inlined callees before their caller), at most max. When ret is the
 * return address of a call (vaddr = ret - 1), the functions that call
 * entered by tail calls come first, with inlined = 2. Returns how many
 * frames were found, 0 when nothing names this address. */
int image__symbolize(struct image *img, uint64_t vaddr, uint64_t ret, struct sym_frame *out, int max);
void sym_frame__release(struct sym_frame *f);

/* Load the symbol table and DWARF of img on a worker thread, so the
 * decompression of large debug files overlaps the recording instead of
 * delaying its end. image__symbolize waits for it; nothing else may touch
 * img meanwhile. */
void image__prefetch(struct image *img);
/* Whether img is queued or being loaded by the prefetch worker (naming an
 * address in it now would wait). */
bool image__loading(const struct image *img);
/* A function name for vaddr from the image's own symbol tables alone (no
 * debug file, no inlining, no line): at once, and safe to call while the
 * prefetch worker loads img. malloc'ed, or NULL. */
char *image__quick_name(struct image *img, uint64_t vaddr);
/* Someone is about to wait for names: take back every queued image (the
 * caller loads what it uses, at its own priority: the worker's, nice 19, may
 * get no CPU on a busy machine) and, where allowed, raise the worker's
 * priority for the one it is loading. */
void image__prefetch_hurry(void);
/* Wait for queued prefetches and stop the worker (before freeing images). */
void image__prefetch_stop(void);

/* C++ (and Rust legacy) demangling; returns a malloc'ed name (a copy of the
 * input when it is not mangled). */
char *symbols__demangle(const char *name);

#endif
