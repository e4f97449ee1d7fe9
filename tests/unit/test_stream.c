/* stream/stream.c: records stored compressed (a ZBLOCK per flush) read back
 * whole and in order; a file cut inside a block keeps the blocks before it;
 * a damaged, oversized, lying or nested block is refused with a reason. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>
#include "stream/stream.h"
#include "util/util.h"

static char path[64];

static struct stream_writer *open_tmp(bool compress)
{
	snprintf(path, sizeof(path), "/tmp/kiln-stream-%d-XXXXXX", (int)getpid());
	int fd = mkstemp(path);
	close(fd);
	struct stream_writer *w = stream_writer__open(path);
	cr_assert_not_null(w);
	stream_writer__set_compress(w, compress);
	return w;
}

/* n records of type 13 holding their index, in flushes of per */
static void write_n(struct stream_writer *w, uint32_t n, uint32_t per)
{
	for (uint32_t i = 0; i < n; i++) {
		uint64_t v[4] = {i, i * 7, 0x5555, i};
		stream_writer__record(w, 13, v, sizeof(v));
		if ((i + 1) % per == 0)
			cr_assert_eq(stream_writer__flush(w), 0);
	}
}

/* Records read back; *raw: ZBLOCK records seen when read raw. */
static uint32_t read_all(int *status, uint32_t *zblocks)
{
	struct stream_reader r;
	cr_assert_eq(stream_reader__open(&r, path), 0, "%s", r.err);
	uint16_t t;
	const unsigned char *p;
	uint32_t len, n = 0;
	int k;
	while ((k = stream_reader__next(&r, &t, &p, &len)) == 1) {
		uint64_t v[4];
		cr_assert_eq(len, sizeof(v));
		memcpy(v, p, sizeof(v));
		cr_assert_eq(v[0], n, "record %u out of order (%llu)", n, (unsigned long long)v[0]);
		n++;
	}
	cr_assert_eq(k, 0, "%s", r.err);
	*status = r.status;
	stream_reader__release(&r);
	cr_assert_eq(stream_reader__open(&r, path), 0);
	*zblocks = 0;
	while (stream_reader__next_raw(&r, &t, &p, &len) == 1)
		*zblocks += t == REC_ZBLOCK;
	stream_reader__release(&r);
	return n;
}

Test(stream, compressed_blocks_read_back_whole_and_in_order)
{
	struct stream_writer *w = open_tmp(true);
	write_n(w, 3000, 1000);
	cr_assert_eq(stream_writer__free(w), 0);
	int st;
	uint32_t zb;
	cr_assert_eq(read_all(&st, &zb), 3000);
	cr_assert_eq(st, STREAM_OK);
	cr_assert_eq(zb, 3, "one block a flush");
	unlink(path);
	w = open_tmp(false);
	write_n(w, 3000, 1000);
	cr_assert_eq(stream_writer__free(w), 0);
	cr_assert_eq(read_all(&st, &zb), 3000);
	cr_assert_eq(zb, 0, "--no-compress writes no block");
	unlink(path);
}

Test(stream, a_flush_larger_than_a_block_is_split)
{
	struct stream_writer *w = open_tmp(true);
	/* 600,000 records of 44 bytes: 26 MB in one flush, two blocks at least */
	write_n(w, 600000, 600000);
	cr_assert_eq(stream_writer__free(w), 0);
	int st;
	uint32_t zb;
	cr_assert_eq(read_all(&st, &zb), 600000);
	cr_assert_geq(zb, 2);
	unlink(path);
}

Test(stream, cut_inside_a_block_keeps_the_blocks_before)
{
	struct stream_writer *w = open_tmp(true);
	write_n(w, 2000, 1000);
	cr_assert_eq(stream_writer__free(w), 0);
	FILE *f = fopen(path, "r");
	fseek(f, 0, SEEK_END);
	long len = ftell(f);
	fclose(f);
	cr_assert_eq(truncate(path, len - 10), 0);
	int st;
	uint32_t zb;
	cr_assert_eq(read_all(&st, &zb), 1000);
	cr_assert_eq(st, STREAM_TRUNCATED);
	unlink(path);
}

static int read_mem_err(const void *file, size_t n, char *err, size_t errlen)
{
	struct stream_reader r;
	cr_assert_eq(stream_reader__open_mem(&r, file, n), 0);
	uint16_t t;
	const unsigned char *p;
	uint32_t len;
	int k;
	while ((k = stream_reader__next(&r, &t, &p, &len)) == 1)
		;
	snprintf(err, errlen, "%s", r.err);
	stream_reader__release(&r);
	return k;
}

/* A file of one ZBLOCK whose payload is u32 raw + frame of raw bytes. */
static void zfile(struct buf *file, const void *raw, size_t n, uint32_t declared, bool lie_frame)
{
	struct stream_writer *w = stream_writer__new();
	stream_writer__set_compress(w, false);
	struct buf z;
	buf__init(&z);
	buf__u32(&z, declared);
	size_t bound = ZSTD_compressBound(n);
	buf__reserve(&z, bound);
	size_t k = ZSTD_compress(z.data + 4, bound, raw, n, 1);
	cr_assert(!ZSTD_isError(k));
	z.len = 4 + k;
	if (lie_frame)
		z.data[z.len - 1] ^= 0xff;
	stream_writer__record(w, REC_ZBLOCK, z.data, z.len);
	size_t len;
	const void *p = stream_writer__pending(w, &len);
	buf__init(file);
	buf__put(file, p, len);
	buf__release(&z);
	stream_writer__free(w);
}

Test(stream, damaged_lying_and_nested_blocks_are_refused)
{
	char err[256];
	/* a record inside: type 13, 8 bytes */
	struct stream_writer *inner = stream_writer__new();
	stream_writer__set_compress(inner, false);
	uint64_t v = 42;
	stream_writer__record(inner, 13, &v, sizeof(v));
	size_t ilen;
	const unsigned char *ip = stream_writer__pending(inner, &ilen);
	ip += 16; /* past the file header */
	ilen -= 16;
	struct buf file;
	zfile(&file, ip, ilen, (uint32_t)ilen, false);
	cr_assert_eq(read_mem_err(file.data, file.len, err, sizeof(err)), 0, "a good block: %s", err);
	buf__release(&file);
	zfile(&file, ip, ilen, (uint32_t)ilen + 1, false);
	cr_assert_eq(read_mem_err(file.data, file.len, err, sizeof(err)), -1);
	cr_assert(strstr(err, "corrupt compressed block"), "declared size that is not the frame's: %s", err);
	buf__release(&file);
	zfile(&file, ip, ilen, (uint32_t)ilen, true);
	cr_assert_eq(read_mem_err(file.data, file.len, err, sizeof(err)), -1);
	cr_assert(strstr(err, "compressed block"), "a damaged frame: %s", err);
	buf__release(&file);
	/* a block inside a block */
	struct buf nested;
	zfile(&nested, ip, ilen, (uint32_t)ilen, false);
	zfile(&file, nested.data + 16, nested.len - 16, (uint32_t)(nested.len - 16), false);
	cr_assert_eq(read_mem_err(file.data, file.len, err, sizeof(err)), -1);
	cr_assert(strstr(err, "compressed block"), "a nested block: %s", err);
	buf__release(&file);
	buf__release(&nested);
	/* a record inside whose length runs past the block */
	unsigned char bad[sizeof(uint64_t) + 12];
	memcpy(bad, ip, sizeof(bad));
	uint32_t big = 1000;
	memcpy(bad + 4, &big, 4);
	zfile(&file, bad, sizeof(bad), sizeof(bad), false);
	cr_assert_eq(read_mem_err(file.data, file.len, err, sizeof(err)), -1);
	cr_assert(strstr(err, "compressed block"), "%s", err);
	buf__release(&file);
	stream_writer__free(inner);
}
