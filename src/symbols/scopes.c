/* Compilation units indexed once (see scopes.h). A DIE with several address
 * ranges is several nodes; a child's node hangs under the node of its
 * parent's ranges that holds it. Depth and size are bounded: a unit is data
 * from a file kiln did not write. */
#include <dwarf.h>
#include <stdlib.h>
#include <string.h>
#include "symbols/scopes.h"

#define MAX_DEPTH 256
#define MAX_NODES (4u << 20)

struct node {
	uint64_t lo, hi;
	Dwarf_Off off;
	int32_t parent;              /* node index while building, -1 a root */
	uint32_t kid_begin, kid_end; /* children, in sorted order */
};

struct cu_index {
	Dwarf *dbg;
	struct node *v;
	size_t n, cap;
	uint32_t root_begin, root_end;
};

void scope_cache__init(struct scope_cache *c)
{
	memset(c, 0, sizeof(*c));
	u64map__init(&c->units);
}

void scope_cache__release(struct scope_cache *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free(c->v[i]->v);
		free(c->v[i]);
	}
	free(c->v);
	u64map__release(&c->units);
	memset(c, 0, sizeof(*c));
}

static void add_nodes(struct cu_index *x, Dwarf_Die *die, const int32_t *parents, int nparents, int32_t *mine,
		      int *nmine)
{
	Dwarf_Addr base, lo, hi;
	ptrdiff_t off = 0;
	*nmine = 0;
	while ((off = dwarf_ranges(die, off, &base, &lo, &hi)) > 0 && x->n < MAX_NODES) {
		if (hi <= lo)
			continue;
		int32_t parent = nparents ? parents[0] : -1;
		for (int i = 0; i < nparents; i++)
			if (x->v[parents[i]].lo <= lo && lo < x->v[parents[i]].hi) {
				parent = parents[i];
				break;
			}
		ARR_GROW(x->v, x->cap, x->n + 1);
		x->v[x->n] = (struct node){.lo = lo, .hi = hi, .off = dwarf_dieoffset(die), .parent = parent};
		if (*nmine < 64)
			mine[(*nmine)++] = (int32_t)x->n;
		x->n++;
	}
}

static void walk(struct cu_index *x, Dwarf_Die *die, const int32_t *parents, int nparents, int depth)
{
	Dwarf_Die kid;
	if (depth > MAX_DEPTH || dwarf_child(die, &kid) != 0)
		return;
	do {
		int tag = dwarf_tag(&kid);
		if (tag == DW_TAG_subprogram || tag == DW_TAG_inlined_subroutine) {
			int32_t mine[64];
			int nmine;
			add_nodes(x, &kid, parents, nparents, mine, &nmine);
			if (nmine)
				walk(x, &kid, mine, nmine, depth + 1);
			else if (tag == DW_TAG_subprogram)
				walk(x, &kid, parents, nparents, depth + 1); /* a declaration: may hold nothing with code */
		} else {
			walk(x, &kid, parents, nparents, depth + 1); /* lexical blocks, namespaces, classes */
		}
	} while (dwarf_siblingof(&kid, &kid) == 0 && x->n < MAX_NODES);
}

static const struct node *sort_nodes;

static int node_cmp(const void *a, const void *b)
{
	const struct node *x = &sort_nodes[*(const uint32_t *)a], *y = &sort_nodes[*(const uint32_t *)b];
	if (x->parent != y->parent)
		return x->parent < y->parent ? -1 : 1;
	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

static struct cu_index *index_unit(Dwarf_Die *cudie)
{
	struct cu_index *x = xcalloc(1, sizeof(*x));
	x->dbg = dwarf_cu_getdwarf(cudie->cu);
	walk(x, cudie, NULL, 0, 0);
	/* order by (parent, lo); children of a node are then one run */
	uint32_t *order = xmalloc((x->n + 1) * sizeof(*order)), *pos = xmalloc((x->n + 1) * sizeof(*pos));
	for (uint32_t i = 0; i < x->n; i++)
		order[i] = i;
	sort_nodes = x->v;
	qsort(order, x->n, sizeof(*order), node_cmp);
	struct node *v = xmalloc((x->n + 1) * sizeof(*v));
	for (uint32_t i = 0; i < x->n; i++) {
		v[i] = x->v[order[i]];
		pos[order[i]] = i;
	}
	for (uint32_t i = 0; i < x->n; i++) {
		v[i].parent = v[i].parent < 0 ? -1 : (int32_t)pos[v[i].parent];
		v[i].kid_begin = v[i].kid_end = 0;
	}
	x->root_begin = x->root_end = 0;
	for (uint32_t i = 0; i < x->n;) {
		uint32_t e = i + 1;
		while (e < x->n && v[e].parent == v[i].parent)
			e++;
		if (v[i].parent < 0) {
			x->root_begin = i;
			x->root_end = e;
		} else {
			v[v[i].parent].kid_begin = i;
			v[v[i].parent].kid_end = e;
		}
		i = e;
	}
	free(x->v);
	x->v = v;
	x->cap = x->n;
	free(order);
	free(pos);
	return x;
}

/* The node of [b, e) (sorted by lo) that holds pc, or -1. Siblings may
 * overlap in odd DWARF: the nearest few before are tried too. */
static long holder(const struct cu_index *x, uint32_t b, uint32_t e, uint64_t pc)
{
	uint32_t lo = b, hi = e;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (x->v[mid].lo <= pc)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (uint32_t i = lo, tries = 0; i > b && tries < 8; i--, tries++)
		if (pc < x->v[i - 1].hi)
			return (long)(i - 1);
	return -1;
}

int scope_cache__find(struct scope_cache *c, Dwarf_Die *cudie, Dwarf_Addr pc, Dwarf_Die **out)
{
	*out = NULL;
	uint64_t key = dwarf_dieoffset(cudie);
	struct u64map_ent *e = u64map__find(&c->units, key);
	struct cu_index *x;
	if (e) {
		x = c->v[e->v1 - 1];
	} else {
		x = index_unit(cudie);
		ARR_GROW(c->v, c->cap, c->n + 1);
		c->v[c->n++] = x;
		u64map__upsert(&c->units, key, NULL)->v1 = c->n;
	}
	uint32_t path[MAX_DEPTH];
	int depth = 0;
	uint32_t b = x->root_begin, end = x->root_end;
	for (;;) {
		long at = holder(x, b, end, pc);
		if (at < 0 || depth == MAX_DEPTH)
			break;
		path[depth++] = (uint32_t)at;
		b = x->v[at].kid_begin;
		end = x->v[at].kid_end;
		if (b >= end)
			break;
	}
	if (!depth)
		return 0;
	Dwarf_Die *dies = xcalloc((size_t)depth, sizeof(*dies));
	int n = 0;
	for (int i = depth - 1; i >= 0; i--)
		if (dwarf_offdie(x->dbg, x->v[path[i]].off, &dies[n]))
			n++;
	*out = dies;
	return n;
}
