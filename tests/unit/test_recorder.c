/* collect/recorder.c: the memory maps it keeps per process. */
#include <criterion/criterion.h>
#include <unistd.h>
#include "collect/recorder.h"
#include "stream/stream.h"

/* A new mapping in the middle of an old one keeps both of the old one's
 * ends: the part above it once went missing. */
Test(recorder, mapping_split_in_the_middle_keeps_both_ends)
{
	struct stream_writer *w = stream_writer__new();
	json_t *meta = json_object();
	struct recorder *r = recorder__new(w, meta);
	json_decref(meta);
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	cr_assert_gt(n, 0);
	exe[n] = 0;
	uint32_t pid = 4242;
	recorder__mmap(r, pid, 0x100000, 0x10000, 0, exe, 0);
	uint64_t bias0, ms, me;
	cr_assert_not_null(recorder__image_at(r, pid, 0x108000, &bias0, &ms, &me));
	recorder__mmap(r, pid, 0x104000, 0x1000, 0, "[anon]", 0); /* splits it */
	uint64_t bias;
	cr_assert_not_null(recorder__image_at(r, pid, 0x102000, &bias, &ms, &me), "the part below");
	cr_assert_eq(ms, 0x100000);
	cr_assert_eq(me, 0x104000);
	cr_assert_eq(bias, bias0);
	cr_assert_not_null(recorder__image_at(r, pid, 0x10c000, &bias, &ms, &me), "the part above");
	cr_assert_eq(ms, 0x105000);
	cr_assert_eq(me, 0x110000);
	cr_assert_eq(bias, bias0);
	recorder__free(r);
	stream_writer__free(w);
}
