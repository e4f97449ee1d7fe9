/* One symbol, and a mapping's load bias, of an ELF file read with pread
 * (never mapped nor copied whole): see elfsym.c. */
#ifndef KILN_SYMBOLS_ELFSYM_H
#define KILN_SYMBOLS_ELFSYM_H
#include <stdint.h>

/* The value and size of the symbol called name (or name@VERSION) in the
 * .dynsym, else the .symtab, of the 64-bit ELF file at fd: 0, -ENOENT,
 * -ENOEXEC. */
int elfsym__lookup(int fd, const char *name, uint64_t *value, uint64_t *size);

/* The bias of a mapping at start of file offset pgoff: 0, -ENOENT, -ENOEXEC. */
int elfsym__bias(int fd, uint64_t start, uint64_t pgoff, uint64_t *bias);

#endif
