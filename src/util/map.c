/* Hashing, and the two tables everything is kept in (see util.h): u64map,
 * open addressing from a 64-bit key to two values, and intern, which gives
 * each distinct byte string a dense id and keeps it. */
#include <stdlib.h>
#include <string.h>
#include "util/util.h"

uint64_t hash_bytes(const void *p, size_t n)
{
	/* FNV-1a over words, finished with a 64-bit mix: fast and good enough
	 * for interning stacks and strings. */
	const unsigned char *s = p;
	uint64_t h = 0xcbf29ce484222325ULL ^ n;
	while (n >= 8) {
		uint64_t w;
		memcpy(&w, s, 8);
		h = (h ^ w) * 0x100000001b3ULL;
		h ^= h >> 29;
		s += 8;
		n -= 8;
	}
	while (n--)
		h = (h ^ *s++) * 0x100000001b3ULL;
	return hash_u64(h);
}

/* Fibonacci hashing: one multiply, the top bits index the table; spreads
 * aligned addresses (the common key) well. cap is a power of two. */
static inline size_t u64map_slot(const struct u64map *m, uint64_t key)
{
	return (size_t)((key * 0x9e3779b97f4a7c15ULL) >> (64 - __builtin_ctzll(m->cap)));
}

size_t upper_bound_u64(const void *base, size_t n, size_t size, uint64_t key)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		uint64_t k;
		memcpy(&k, (const char *)base + mid * size, sizeof(k));
		if (k <= key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

void u64map__init(struct u64map *m)
{
	memset(m, 0, sizeof(*m));
}

void u64map__release(struct u64map *m)
{
	free(m->ents);
	u64map__init(m);
}

void u64map__clear(struct u64map *m)
{
	if (m->ents)
		memset(m->ents, 0, m->cap * sizeof(*m->ents));
	m->len = 0;
	m->has_zero = false;
}

static void u64map_rehash(struct u64map *m, size_t ncap)
{
	struct u64map_ent *old = m->ents;
	size_t ocap = m->cap;
	m->ents = xcalloc(ncap, sizeof(*m->ents));
	m->cap = ncap;
	for (size_t i = 0; i < ocap; i++) {
		if (!old[i].key)
			continue;
		size_t j = u64map_slot(m, old[i].key);
		while (m->ents[j].key)
			j = (j + 1) & (ncap - 1);
		m->ents[j] = old[i];
	}
	free(old);
}

struct u64map_ent *u64map__find(struct u64map *m, uint64_t key)
{
	if (!key) /* the table's empty marker: key 0 has a slot of its own */
		return m->has_zero ? &m->zero : NULL;
	if (!m->cap)
		return NULL;
	size_t mask = m->cap - 1, j = u64map_slot(m, key);
	for (;;) {
		struct u64map_ent *e = &m->ents[j];
		if (e->key == key)
			return e;
		if (!e->key)
			return NULL;
		j = (j + 1) & mask;
	}
}

struct u64map_ent *u64map__upsert(struct u64map *m, uint64_t key, bool *created)
{
	if (!key) {
		if (created)
			*created = !m->has_zero;
		if (!m->has_zero) {
			m->zero = (struct u64map_ent){0, 0, 0};
			m->has_zero = true;
			m->len++;
		}
		return &m->zero;
	}
	if ((m->len + 1) * 2 >= m->cap)
		u64map_rehash(m, m->cap ? m->cap * 2 : 64);
	size_t mask = m->cap - 1, j = u64map_slot(m, key);
	for (;;) {
		struct u64map_ent *e = &m->ents[j];
		if (e->key == key) {
			if (created)
				*created = false;
			return e;
		}
		if (!e->key) {
			e->key = key;
			e->v1 = e->v2 = 0;
			m->len++;
			if (created)
				*created = true;
			return e;
		}
		j = (j + 1) & mask;
	}
}

bool u64map__remove(struct u64map *m, uint64_t key, struct u64map_ent *out)
{
	struct u64map_ent *e = u64map__find(m, key);
	if (!e)
		return false;
	if (out)
		*out = *e;
	u64map__remove_at(m, e);
	return true;
}

void u64map__remove_at(struct u64map *m, struct u64map_ent *e)
{
	if (e == &m->zero) {
		m->has_zero = false;
		m->len--;
		return;
	}
	size_t mask = m->cap - 1, i = (size_t)(e - m->ents), j = i;
	/* Backward-shift deletion: no tombstones, lookups stay short. */
	for (;;) {
		j = (j + 1) & mask;
		if (!m->ents[j].key)
			break;
		size_t home = u64map_slot(m, m->ents[j].key);
		if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
			m->ents[i] = m->ents[j];
			i = j;
		}
	}
	m->ents[i].key = 0;
	m->len--;
}

struct u64map_ent *u64map__next(struct u64map *m, size_t *it)
{
	for (; *it < m->cap; (*it)++)
		if (m->ents[*it].key)
			return &m->ents[(*it)++];
	if (*it == m->cap && m->has_zero) {
		(*it)++;
		return &m->zero;
	}
	return NULL;
}

void intern__init(struct intern *t)
{
	memset(t, 0, sizeof(*t));
}

void intern__release(struct intern *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->keys[i]);
	free(t->keys);
	free(t->lens);
	free(t->hashes);
	free(t->slots);
	intern__init(t);
}

static void intern_rehash(struct intern *t)
{
	size_t ns = t->nslots ? t->nslots * 2 : 64;
	free(t->slots);
	t->slots = xcalloc(ns, sizeof(*t->slots));
	t->nslots = ns;
	for (size_t id = 0; id < t->n; id++) {
		size_t j = t->hashes[id] & (ns - 1);
		while (t->slots[j])
			j = (j + 1) & (ns - 1);
		t->slots[j] = (uint32_t)id + 1;
	}
}

static size_t intern_probe(const struct intern *t, const void *key, uint32_t len, uint64_t h)
{
	size_t mask = t->nslots - 1, j = h & mask;
	for (;;) {
		uint32_t s = t->slots[j];
		if (!s)
			return j;
		s--;
		if (t->hashes[s] == h && t->lens[s] == len && !memcmp(t->keys[s], key, len))
			return j;
		j = (j + 1) & mask;
	}
}

uint32_t intern__put(struct intern *t, const void *key, uint32_t len, bool *added)
{
	if ((t->n + 1) * 2 >= t->nslots)
		intern_rehash(t);
	uint64_t h = hash_bytes(key, len);
	size_t j = intern_probe(t, key, len, h);
	if (t->slots[j]) {
		if (added)
			*added = false;
		return t->slots[j] - 1;
	}
	if (t->n == t->cap) {
		size_t c = t->cap ? t->cap * 2 : 64;
		t->keys = xrealloc(t->keys, c * sizeof(*t->keys));
		t->lens = xrealloc(t->lens, c * sizeof(*t->lens));
		t->hashes = xrealloc(t->hashes, c * sizeof(*t->hashes));
		t->cap = c;
	}
	unsigned char *copy = xmalloc(len + 1);
	memcpy(copy, key, len);
	copy[len] = 0;
	t->keys[t->n] = copy;
	t->lens[t->n] = len;
	t->hashes[t->n] = h;
	t->slots[j] = (uint32_t)t->n + 1;
	if (added)
		*added = true;
	return (uint32_t)t->n++;
}

int64_t intern__get(const struct intern *t, const void *key, uint32_t len)
{
	if (!t->nslots)
		return -1;
	size_t j = intern_probe(t, key, len, hash_bytes(key, len));
	return t->slots[j] ? (int64_t)t->slots[j] - 1 : -1;
}

uint32_t intern__str(struct intern *t, const char *s)
{
	return intern__put(t, s, (uint32_t)strlen(s), NULL);
}
