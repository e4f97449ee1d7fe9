/* What the image files share: symbol tables (image.c) and DWARF
 * (image_dwarf.c) of one struct image (image.h). */
#ifndef KILN_SYMBOLS_IMAGE_INT_H
#define KILN_SYMBOLS_IMAGE_INT_H

#include <elfutils/libdwfl.h>
#include "symbols/image.h"
#include "symbols/scopes.h"

struct image_sym {
	uint64_t addr, size;
	char *name;
};

struct image_dwarf {
	Dwfl *dwfl;
	Dwfl_Module *mod;
	struct scope_cache scopes; /* units indexed as addresses are seen */
};

/* image_dwarf.c: the image's DWARF opened, once (its own, or a separate
 * debug file found the safe way: symbols/debugfile.h); none is fine */
void image_dwarf_open(struct image *img);
/* image.c: the symbol table, sorted, loaded once (thread-safe: the
 * prefetch worker loads it too); the symbol holding vaddr, or NULL */
void image_load_syms(struct image *img);
const struct image_sym *image_find_sym(struct image *img, uint64_t vaddr);

#endif
