/* The chain of functions (inlined ones too) that contains an address, from
 * an index of each compilation unit built once, on the first address seen
 * in it: dwarf_getscopes walks the unit from its root on every call, which
 * for a large unit (CPython's ceval.c, a compiler's) made the recorder
 * spend seconds per program. Only units of addresses seen are indexed.
 *
 *   unit ─► subprogram [lo,hi) ─► inlined_subroutine [lo,hi) ─► …   (children sorted by lo) */
#ifndef KILN_SYMBOLS_SCOPES_H
#define KILN_SYMBOLS_SCOPES_H

#include <elfutils/libdw.h>
#include "util/util.h"

struct scope_cache {
	struct u64map units; /* unit DIE offset -> index + 1 in v */
	struct cu_index **v;
	size_t n, cap;
};

void scope_cache__init(struct scope_cache *c);
void scope_cache__release(struct scope_cache *c);
/* The subprogram and inlined-subroutine DIEs containing pc (unit-relative,
 * as dwarf_getscopes takes it), innermost first, malloc'ed into *out (as
 * dwarf_getscopes_die gives them: the concrete chain, every inlined level).
 * The count, 0 when none. */
int scope_cache__find(struct scope_cache *c, Dwarf_Die *cudie, Dwarf_Addr pc, Dwarf_Die **out);

#endif
