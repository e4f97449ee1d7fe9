/* util: the bounded cursor, the u64 map (with backward-shift deletion) and
 * the interner, against simple references. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "util/util.h"

Test(cursor, reads_within_bounds_only)
{
	unsigned char b[] = {1, 0, 2, 0, 0, 0, 3, 'h', 'i'};
	struct cursor c;
	cursor__init(&c, b, sizeof(b));
	uint16_t v16;
	uint32_t v32;
	cr_assert(cursor__u16(&c, &v16));
	cr_assert_eq(v16, 1);
	cr_assert(cursor__u32(&c, &v32));
	cr_assert_eq(v32, 2);
	uint8_t v8;
	cr_assert(cursor__u8(&c, &v8));
	cr_assert_eq(v8, 3);
	uint64_t v64;
	cr_assert_not(cursor__u64(&c, &v64), "a read past the end fails");
	cr_assert(c.bad);
	cr_assert_eq(cursor__left(&c), 0);
}

Test(cursor, string_longer_than_buffer_fails)
{
	unsigned char b[] = {10, 0, 'a', 'b'};
	struct cursor c;
	cursor__init(&c, b, sizeof(b));
	cr_assert_null(cursor__str(&c));
	cr_assert(c.bad);
}

Test(u64map, matches_a_reference_under_churn)
{
	enum { N = 20000 };
	static uint64_t ref[N]; /* value+1 or 0 */
	struct u64map m;
	u64map__init(&m);
	unsigned long rng = 12345;
	for (int i = 0; i < 400000; i++) {
		rng = rng * 6364136223846793005UL + 1442695040888963407UL;
		uint64_t k = (rng >> 33) % N + 1;
		if ((rng >> 20) & 1) {
			u64map__upsert(&m, k * 4096, NULL)->v1 = (uint64_t)i;
			ref[k - 1] = (uint64_t)i + 1;
		} else {
			bool had = u64map__remove(&m, k * 4096, NULL);
			cr_assert_eq(had, ref[k - 1] != 0);
			ref[k - 1] = 0;
		}
	}
	size_t live = 0;
	for (int k = 1; k <= N; k++) {
		struct u64map_ent *e = u64map__find(&m, (uint64_t)k * 4096);
		if (ref[k - 1]) {
			cr_assert_not_null(e);
			cr_assert_eq(e->v1, ref[k - 1] - 1);
			live++;
		} else {
			cr_assert_null(e);
		}
	}
	cr_assert_eq(m.len, live);
	u64map__release(&m);
}

/* remove_at (the entry find or upsert gave) against a reference, key 0
 * (the map's own slot) included: what the heap's live blocks go through. */
Test(u64map, remove_at_matches_a_reference)
{
	enum { N = 5000 };
	static uint64_t ref[N]; /* value+1 or 0; key k*64, k from 0 */
	struct u64map m;
	u64map__init(&m);
	unsigned long rng = 777;
	for (int i = 0; i < 200000; i++) {
		rng = rng * 6364136223846793005UL + 1442695040888963407UL;
		uint64_t k = (rng >> 33) % N;
		bool created;
		struct u64map_ent *e = u64map__upsert(&m, k * 64, &created);
		cr_assert_eq(created, ref[k] == 0);
		if ((rng >> 20) & 1) {
			e->v1 = (uint64_t)i;
			ref[k] = (uint64_t)i + 1;
		} else {
			u64map__remove_at(&m, e);
			ref[k] = 0;
		}
	}
	size_t live = 0;
	for (uint64_t k = 0; k < N; k++) {
		struct u64map_ent *e = u64map__find(&m, k * 64);
		cr_assert_eq(e != NULL, ref[k] != 0, "key %lu", (unsigned long)(k * 64));
		if (e) {
			cr_assert_eq(e->v1, ref[k] - 1);
			live++;
		}
	}
	cr_assert_eq(m.len, live);
	u64map__release(&m);
}

Test(intern, ids_are_dense_and_stable)
{
	struct intern t;
	intern__init(&t);
	char key[32];
	for (int i = 0; i < 5000; i++) {
		snprintf(key, sizeof(key), "frame_%d", i);
		cr_assert_eq(intern__str(&t, key), (uint32_t)i);
	}
	for (int i = 0; i < 5000; i++) {
		snprintf(key, sizeof(key), "frame_%d", i);
		cr_assert_eq(intern__get(&t, key, (uint32_t)strlen(key)), i);
		cr_assert_str_eq(intern__cstr(&t, (uint32_t)i), key);
	}
	cr_assert_eq(intern__get(&t, "nope", 4), -1);
	intern__release(&t);
}

Test(fmt, bytes)
{
	char b[32];
	cr_assert_str_eq(fmt_bytes(b, sizeof(b), 512), "512 B");
	cr_assert_str_eq(fmt_bytes(b, sizeof(b), 1536), "1.50 KiB");
	cr_assert_str_eq(fmt_bytes(b, sizeof(b), -3.0 * 1024 * 1024), "-3.00 MiB");
}

/* every key is a key: 0 (the table's own empty marker) and ~0 included */
Test(util, u64map_takes_every_key)
{
	struct u64map m;
	u64map__init(&m);
	bool created;
	u64map__upsert(&m, 0, &created)->v1 = 7;
	cr_assert(created);
	u64map__upsert(&m, UINT64_MAX, NULL)->v1 = 9;
	for (uint64_t k = 1; k < 100; k++)
		u64map__upsert(&m, k, NULL)->v1 = k;
	cr_assert_eq(m.len, 101);
	cr_assert_eq(u64map__find(&m, 0)->v1, 7);
	cr_assert_eq(u64map__find(&m, UINT64_MAX)->v1, 9);
	size_t it = 0, n = 0;
	bool saw_zero = false;
	for (struct u64map_ent *e; (e = u64map__next(&m, &it));) {
		n++;
		saw_zero |= e->key == 0;
	}
	cr_assert_eq(n, 101);
	cr_assert(saw_zero);
	struct u64map_ent out;
	cr_assert(u64map__remove(&m, 0, &out));
	cr_assert_eq(out.v1, 7);
	cr_assert_null(u64map__find(&m, 0));
	cr_assert_not(u64map__remove(&m, 0, NULL));
	cr_assert_eq(m.len, 100);
	u64map__clear(&m);
	cr_assert_null(u64map__find(&m, 5));
	u64map__release(&m);
}
