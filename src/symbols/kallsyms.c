/* Kernel symbols (see kallsyms.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "symbols/kallsyms.h"
#include "util/util.h"

struct ksym {
	uint64_t addr;
	char *name;
};

struct ksyms {
	struct ksym *s;
	size_t n;
};

static int ksym_cmp(const void *a, const void *b)
{
	const struct ksym *x = a, *y = b;
	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

struct ksyms *ksyms__load(void)
{
	FILE *f = fopen("/proc/kallsyms", "re");
	if (!f)
		return NULL;
	struct ksyms *k = xcalloc(1, sizeof(*k));
	size_t cap = 0;
	char line[512];
	while (fgets(line, sizeof(line), f)) {
		unsigned long long a;
		char type, name[256];
		if (sscanf(line, "%llx %c %255s", &a, &type, name) != 3 || !a)
			continue;
		if (type != 't' && type != 'T' && type != 'w' && type != 'W')
			continue; /* functions only */
		ARR_GROW(k->s, cap, k->n + 1);
		k->s[k->n].addr = a;
		k->s[k->n].name = xstrdup(name);
		k->n++;
	}
	fclose(f);
	if (!k->n) { /* no right to see addresses */
		ksyms__free(k);
		return NULL;
	}
	sort_array(k->s, k->n, sizeof(*k->s), ksym_cmp);
	return k;
}

const char *ksyms__name(const struct ksyms *k, uint64_t addr)
{
	if (!k)
		return NULL;
	size_t i = upper_bound_u64(k->s, k->n, sizeof(*k->s), addr);
	return i ? k->s[i - 1].name : NULL;
}

void ksyms__free(struct ksyms *k)
{
	if (!k)
		return;
	for (size_t i = 0; i < k->n; i++)
		free(k->s[i].name);
	free(k->s);
	free(k);
}
