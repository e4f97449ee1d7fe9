/* collect/python.c's pure parts: the 3.11+ location table against what
 * CPython's own co_lines() says (tables made by tests' sample() below on
 * each version), the merge of Python frames into native stacks, and the
 * reading of 3.13's _Py_DebugOffsets.
 *
 *   def sample(x):                  # line 1 of the generating script
 *       y = x + 1
 *       if y > 3:
 *           z = [i * 2
 *                for i in range(y)]
 *       else:
 *           z = None
 *
 *       return (y,
 *               z)
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include "collect/python.h"
#include "symbols/image.h"
#include "kiln/python.h"

/* 3.10.13: co_linetable's byte pairs (PEP 626), lines from co_lines() */
static const unsigned char lt_310[] = {0x08, 0x01, 0x08, 0x01, 0x06, 0x01, 0x06, 0x01, 0x06, 0xff, 0x02, 0x05, 0x02, 0x01, 0x04, 0xff, 0x04, 0xfe, 0x02, 0x02, 0x02, 0x01, 0x04, 0xff};
static const int lines_310[] = {2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 5, 5, 5, 4, 4, 4, 9, 10, 9, 9, 7, 7, 9, 10, 9, 9};
static const int first_310 = 1;
/* 3.11.2 */
static const unsigned char lt_311[] = {0x80, 0x00, 0xd8, 0x08, 0x09, 0x88, 0x41, 0x89, 0x05, 0x80, 0x41, 0xd8, 0x07, 0x08, 0x88, 0x31, 0x82, 0x75, 0x80, 0x75, 0xf0, 0x02, 0x01, 0x0d, 0x20, 0xf0, 0x00, 0x01, 0x0d, 0x20, 0xdd, 0x16, 0x1b, 0x98, 0x41, 0x91, 0x68, 0x94, 0x68, 0xf0, 0x03, 0x01, 0x0d, 0x20, 0xf1, 0x00, 0x01, 0x0d, 0x20, 0xf4, 0x00, 0x01, 0x0d, 0x20, 0x88, 0x01, 0x88, 0x01, 0xf0, 0x06, 0x00, 0x0d, 0x11, 0x88, 0x01, 0xe0, 0x0c, 0x0d, 0xd8, 0x0c, 0x0d, 0xf0, 0x03, 0x01, 0x0c, 0x0f, 0xf0, 0x00, 0x01, 0x05, 0x0f};
static const int lines_311[] = {2, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 5, 5, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 8, 8, 10, 11, 10, 10};
static const int first_311 = 2;
/* 3.12.1 */
static const unsigned char lt_312[] = {0x80, 0x00, 0xd8, 0x08, 0x09, 0x88, 0x41, 0x89, 0x05, 0x80, 0x41, 0xd8, 0x07, 0x08, 0x88, 0x31, 0x82, 0x75, 0xe4, 0x16, 0x1b, 0x98, 0x41, 0x93, 0x68, 0xf6, 0x03, 0x01, 0x0d, 0x20, 0xd8, 0x11, 0x12, 0xf0, 0x03, 0x00, 0x0e, 0x0f, 0x90, 0x11, 0x8b, 0x55, 0xf0, 0x00, 0x01, 0x0d, 0x20, 0x88, 0x01, 0xf0, 0x00, 0x01, 0x0d, 0x20, 0xf0, 0x0a, 0x00, 0x0d, 0x0e, 0xd8, 0x0c, 0x0d, 0xf0, 0x03, 0x01, 0x0c, 0x0f, 0xf0, 0x00, 0x01, 0x05, 0x0f, 0xf0, 0x05, 0x00, 0x0d, 0x11, 0x88, 0x01, 0xe0, 0x0c, 0x0d, 0xd8, 0x0c, 0x0d, 0xf0, 0x03, 0x01, 0x0c, 0x0f, 0xf0, 0x00, 0x01, 0x05, 0x0f, 0xf9, 0xf2, 0x0b, 0x01, 0x0d, 0x20};
static const int lines_312[] = {2, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 5, 5, 5, 5, 5, 5, 5, 6, 5, 5, 5, 5, 5, 5, 5, 5, 5, 10, 11, 10, 10, 8, 8, 10, 11, 10, 10, -1, -1, 5, 5, 5};
static const int first_312 = 2;
/* 3.13.0 */
static const unsigned char lt_313[] = {0x80, 0x00, 0xd8, 0x08, 0x09, 0x88, 0x41, 0x89, 0x05, 0x80, 0x41, 0xd8, 0x07, 0x08, 0x88, 0x31, 0x83, 0x75, 0xe4, 0x16, 0x1b, 0x98, 0x41, 0x94, 0x68, 0xf3, 0x03, 0x01, 0x0d, 0x20, 0xd9, 0x16, 0x1e, 0x90, 0x11, 0xf0, 0x03, 0x00, 0x0e, 0x0f, 0x90, 0x11, 0x8c, 0x55, 0xd9, 0x16, 0x1e, 0xf0, 0x03, 0x00, 0x09, 0x0a, 0xf0, 0x00, 0x01, 0x0d, 0x20, 0xf0, 0x0a, 0x00, 0x0d, 0x0e, 0xd8, 0x0c, 0x0d, 0xf0, 0x03, 0x01, 0x0c, 0x0f, 0xf0, 0x00, 0x01, 0x05, 0x0f, 0xf0, 0x05, 0x00, 0x0d, 0x11, 0x88, 0x01, 0xe0, 0x0c, 0x0d, 0xd8, 0x0c, 0x0d, 0xf0, 0x03, 0x01, 0x0c, 0x0f, 0xf0, 0x00, 0x01, 0x05, 0x0f, 0xf9, 0xf2, 0x0b, 0x01, 0x0d, 0x20};
static const int lines_313[] = {2, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 5, 5, 5, 5, 6, 6, 6, 5, 5, 5, 5, 5, 5, 5, 6, 6, 5, 5, 10, 11, 10, 10, 8, 8, 10, 11, 10, 10, -1, -1, 5, 5, 5};
static const int first_313 = 2;

static void check_table(const unsigned char *lt, size_t n, const int *lines, size_t nlines, int first)
{
	for (size_t i = 0; i < nlines; i++)
		cr_assert_eq(python__line(lt, n, first, (uint32_t)i), lines[i], "instruction %zu: line %d, want %d", i,
			     python__line(lt, n, first, (uint32_t)i), lines[i]);
	/* past the end, and a table cut anywhere: never a read beyond it */
	cr_assert_eq(python__line(lt, n, first, (uint32_t)nlines + 100), -1);
	for (size_t cut = 0; cut < n; cut++)
		for (size_t i = 0; i < nlines; i++)
			(void)python__line(lt, cut, first, (uint32_t)i);
}

Test(python, line_311) { check_table(lt_311, sizeof(lt_311), lines_311, sizeof(lines_311) / sizeof(int), first_311); }
Test(python, line_312) { check_table(lt_312, sizeof(lt_312), lines_312, sizeof(lines_312) / sizeof(int), first_312); }
Test(python, line_313) { check_table(lt_313, sizeof(lt_313), lines_313, sizeof(lines_313) / sizeof(int), first_313); }

Test(python, line_310)
{
	size_t n = sizeof(lt_310), nl = sizeof(lines_310) / sizeof(int);
	for (size_t i = 0; i < nl; i++)
		cr_assert_eq(python__line_310(lt_310, n, first_310, (uint32_t)i), lines_310[i],
			     "instruction %zu: line %d, want %d", i, python__line_310(lt_310, n, first_310, (uint32_t)i),
			     lines_310[i]);
	cr_assert_eq(python__line_310(lt_310, n, first_310, (uint32_t)nl + 100), -1);
	for (size_t cut = 0; cut < n; cut++)
		for (size_t i = 0; i < nl; i++)
			(void)python__line_310(lt_310, cut, first_310, (uint32_t)i);
	/* a range with no line (-128) */
	static const unsigned char none[] = {0x04, 0x80, 0x04, 0x01};
	cr_assert_eq(python__line_310(none, sizeof(none), 10, 0), -1);
	cr_assert_eq(python__line_310(none, sizeof(none), 10, 2), 11);
}

/* 3.10's frames: f_lasti an int (-1 before the first instruction), every
 * frame one evaluation-loop call */
Test(python, frame_310)
{
	const struct kiln_py_offsets *o = kiln_py_table(0x030a0df0);
	cr_assert_not_null(o);
	struct kiln_py_frame f;
	kiln_py_frame_of(0x1000, 0x2000, 0x0000000700000005ull, 0, 0, o, &f); /* f_lineno 7, f_lasti 5 */
	cr_assert(f.lasti == 5 && f.entry && !f.cstack && f.code == 0x1000 && f.previous == 0x2000);
	kiln_py_frame_of(0x1000, 0, 0xffffffffull, 0, 0, o, &f);
	cr_assert_eq(f.lasti, 0);
}

/* where a pthread_t keeps its thread's id: the same in every thread */
static void *tid_at(void *arg)
{
	int off = *(int *)arg;
	pid_t got;
	memcpy(&got, (const char *)pthread_self() + off, sizeof(got));
	return (void *)(intptr_t)(got == gettid());
}

Test(python, pthread_tid_offset)
{
	int off = python__pthread_tid_offset();
	cr_assert(off >= 0, "glibc's struct pthread holds the tid");
	cr_assert_eq(python__pthread_tid_offset(), off);
	cr_assert(tid_at(&off));
	pthread_t th;
	void *r;
	cr_assert_eq(pthread_create(&th, NULL, tid_at, &off), 0);
	pthread_join(th, &r);
	cr_assert(r, "another thread's descriptor holds its tid at the same offset");
}

Test(python, line_garbage)
{
	static const unsigned char junk[] = {0x00, 0x41, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	cr_assert_eq(python__line(junk, sizeof(junk), 10, 0), -1); /* no entry start */
	static const unsigned char longv[] = {0xf0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
	cr_assert_eq(python__line(longv, sizeof(longv), 10, 0), -1); /* a varint that never ends */
}

#define N PYK_NATIVE
#define E PYK_EVAL
#define A PYK_ANON
#define PY(c, last) {.code = (c), .lasti = 0, .last_of_call = (last)}

/* 3.10: a Python function calling another goes through C functions
 * (_PyEval_Vector, ...): dropped between two loop calls, kept elsewhere */
Test(python, merge_call_path_310)
{
	uint8_t k[] = {PYK_NATIVE, PYK_EVAL, PYK_CALL, PYK_CALL, PYK_EVAL, PYK_CALL, PYK_NATIVE, PYK_NATIVE};
	struct pyframe py[] = {{.code = 0x10, .last_of_call = true}, {.code = 0x20, .last_of_call = true}};
	int32_t order[16];
	int n = python__merge(k, 8, py, 2, false, order, 16);
	cr_assert_eq(n, 6, "leaf, callee, caller, the caller's C caller, two natives: %d", n);
	cr_assert(order[0] == 0 && order[1] == -1 && order[2] == -2 && order[3] == 5 && order[4] == 6 && order[5] == 7);
	/* a call path with no loop call outside it is the program's own */
	uint8_t k2[] = {PYK_EVAL, PYK_CALL, PYK_NATIVE};
	n = python__merge(k2, 3, py, 1, false, order, 16);
	cr_assert(n == 3 && order[0] == -1 && order[1] == 1 && order[2] == 2);
}

/* native leaf first: C callee, eval, C caller, eval, main */
Test(python, merge_two_calls)
{
	uint8_t k[] = {N, E, N, E, N};
	struct pyframe py[] = {PY(0x10, 0), PY(0x20, 1), PY(0x30, 0), PY(0x40, 1)};
	int32_t o[16];
	int n = python__merge(k, 5, py, 4, false, o, 16);
	int32_t want[] = {0, -1, -2, 2, -3, -4, 4};
	cr_assert_eq(n, 7);
	cr_assert(!memcmp(o, want, sizeof(want)));
}

Test(python, merge_counts_disagree)
{
	uint8_t k[] = {N, E, N, E, N};
	struct pyframe one[] = {PY(0x10, 0), PY(0x20, 1)};
	int32_t o[16];
	cr_assert_eq(python__merge(k, 5, one, 2, false, o, 16), -1); /* a loop call with no frames */
	struct pyframe three[] = {PY(0x10, 1), PY(0x20, 1), PY(0x30, 1)};
	cr_assert_eq(python__merge(k, 5, three, 3, false, o, 16), -1); /* frames left over */
	/* a native stack cut short keeps the frames its loop calls ran */
	cr_assert_eq(python__merge(k, 5, three, 3, true, o, 16), 5);
	/* Python frames cut short: the merged stack ends where they run out */
	cr_assert_eq(python__merge(k, 5, one, 2, true, o, 16), 4);
	int32_t want[] = {0, -1, -2, 2};
	cr_assert(!memcmp(o, want, sizeof(want)));
	uint8_t none[] = {N, N};
	cr_assert_eq(python__merge(none, 2, three, 0, false, o, 16), 2);
}

/* 3.12+: an entry frame with no Python frame of its own (code 0), and an
 * -X perf trampoline (anonymous code) right above each eval frame */
Test(python, merge_empty_call_and_trampolines)
{
	uint8_t k[] = {N, E, A, N, E, A, N};
	struct pyframe py[] = {PY(0, 1), PY(0x30, 1)};
	int32_t o[16];
	int n = python__merge(k, 7, py, 2, false, o, 16);
	int32_t want[] = {0, 3, -2, 6};
	cr_assert_eq(n, 4);
	cr_assert(!memcmp(o, want, sizeof(want)));
	/* anonymous code elsewhere (a JIT) stays */
	uint8_t j[] = {A, N, E, N};
	struct pyframe p1[] = {PY(0x30, 1)};
	cr_assert_eq(python__merge(j, 4, p1, 1, false, o, 16), 4);
	cr_assert_eq(o[0], 0);
}

Test(python, merge_bounded)
{
	uint8_t k[] = {E};
	struct pyframe py[] = {PY(1, 0), PY(2, 0), PY(3, 0), PY(4, 1)};
	int32_t o[2];
	cr_assert_eq(python__merge(k, 1, py, 4, false, o, 2), -1);
}

/* a 3.13 debug-offsets block as the interpreter lays it out */
static void put(unsigned char *d, unsigned off, uint64_t v) { memcpy(d + off, &v, 8); }
static void debug_block(unsigned char *d)
{
	memcpy(d, KILN_PY_DBG_COOKIE, 8);
	put(d, 8, 0x030d00f0);
	put(d, 32, 608); put(d, 40, 632); put(d, 64, 7264); put(d, 72, 7344);
	put(d, 168, 8); put(d, 184, 72); put(d, 200, 160);
	put(d, 232, 8); put(d, 240, 0); put(d, 248, 56); put(d, 264, 70);
	put(d, 280, 112); put(d, 288, 120); put(d, 296, 128); put(d, 304, 136); put(d, 312, 68); put(d, 344, 200);
	put(d, 520, 16); put(d, 528, 32); put(d, 544, 32); put(d, 552, 16); put(d, 560, 40);
}

Test(python, debug_offsets)
{
	unsigned char d[KILN_PY_DBG_SIZE] = {0};
	debug_block(d);
	const struct kiln_py_offsets *t = kiln_py_table(0x030d00f0);
	cr_assert_not_null(t);
	struct kiln_py_offsets o;
	cr_assert_eq(kiln_py_from_debug(d, t, &o), 0);
	cr_assert(!memcmp(&o, t, sizeof(o)), "the table and the interpreter's own offsets agree");
	put(d, 264, 1u << 20); /* an offset no frame has */
	cr_assert_eq(kiln_py_from_debug(d, t, &o), -1);
	put(d, 264, 70);
	d[0] = 'y';
	cr_assert_eq(kiln_py_from_debug(d, t, &o), -1);
	cr_assert_not_null(kiln_py_table(0x030a0000));
	cr_assert(kiln_py_table(0x030a0000)->frame_object && kiln_py_table(0x030a0000)->ts_native_tid == KILN_PY_NONE);
	cr_assert_null(kiln_py_table(0x03090000));
	cr_assert_null(kiln_py_table(0x030e0000));
}

/* A program posing as CPython 3.13 names offsets of its choosing: each one
 * that would index past a structure kiln copies (a frame's 128 bytes, a
 * code object's 256, a str's 96) is refused, and so is a str offset whose
 * compact size wraps. Every table row passes the same check. */
Test(python, debug_offsets_hostile)
{
	for (size_t i = 0; i < sizeof(kiln_py_tables) / sizeof(kiln_py_tables[0]); i++)
		cr_assert(kiln_py_offsets_valid(&kiln_py_tables[i]), "table row %zu", i);
	const struct kiln_py_offsets *t = kiln_py_table(0x030d00f0);
	static const unsigned fields[] = {232, 240, 248, 264, 280, 288, 296, 304, 312, 344, 544, 552, 560};
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		for (uint64_t bad = 0xfff0; bad >= 100; bad = bad == 0xfff0 ? 250 : bad == 250 ? 124 : 99) {
			unsigned char d[KILN_PY_DBG_SIZE] = {0};
			debug_block(d);
			put(d, fields[i], bad);
			struct kiln_py_offsets o;
			if (kiln_py_from_debug(d, t, &o) == 0)
				cr_assert(kiln_py_offsets_valid(&o) && o.fr_size <= KILN_PY_FRAME_MAX &&
						  o.co_size <= KILN_PY_CODE_MAX && o.str_compact_size <= KILN_PY_STR_MAX,
					  "field at %u = %llu accepted out of bounds", fields[i], (unsigned long long)bad);
		}
	}
	/* the wrap of str_ascii_size + 16 */
	struct kiln_py_offsets o = *t;
	o.str_ascii_size = 0xfff8;
	o.str_compact_size = (uint16_t)(o.str_ascii_size + 16);
	cr_assert(!kiln_py_offsets_valid(&o));
}

/* What a program can make the recorder hold in Python names and tables is
 * one budget for every process together, counted in bytes held: 6,000
 * definitions with a 1 MiB table each stop at 256 MiB, and all is given
 * back when the processes go. */
Test(python, held_budget)
{
	struct image *img = image__open("/usr/bin/python3.11");
	if (!img)
		cr_skip_test("skipped: /usr/bin/python3.11 is not installed");
	char why[256];
	struct pyproc *a = pyproc__detect(img, 0, getpid(), why, sizeof(why));
	struct pyproc *b = pyproc__detect(img, 0, getpid(), why, sizeof(why));
	cr_assert(a && b, "%s", why);
	size_t base = python__held();
	static unsigned char table[1 << 20];
	memset(table, 0x80, sizeof(table));
	int refused = 0;
	for (int i = 0; i < 6000; i++) {
		int rc = pyproc__define(i % 2 ? a : b, 0x1000 + 16 * (uint64_t)i, 1, (const unsigned char *)"f", 1, 1,
					(const unsigned char *)"x.py", 4, 1, table, sizeof(table));
		refused += rc == -ENOSPC;
	}
	cr_assert_leq(python__held(), (size_t)256 << 20);
	cr_assert_geq(python__held(), (size_t)200 << 20);
	cr_assert_geq(refused, 5700);
	pyproc__free(a);
	pyproc__free(b);
	cr_assert_eq(python__held(), base);
	image__free(img);
}
