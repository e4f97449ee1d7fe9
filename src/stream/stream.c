/* Record framing for profile files (format.h). The writer buffers records
 * and writes them in whole-record batches so a reader never sees a torn
 * record except at the very end of a file that was cut short; the reader
 * trusts nothing: lengths are bounded, every payload carries a CRC. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>
#include "stream/stream.h"
#include "util/util.h"

int stream_ignore_crc;

struct stream_writer {
	int fd;      /* -1: records wait in memory */
	bool own_fd; /* opened here (stream_writer__open): closed by __free */
	int err;
	size_t lost_bytes; /* of records that could not be written */
	size_t written;
	struct buf pending;
	bool compress;
	ZSTD_CCtx *cctx;
};

struct stream_writer *stream_writer__new(void)
{
	struct stream_writer *w = xcalloc(1, sizeof(*w));
	w->fd = -1;
	w->compress = true;
	buf__init(&w->pending);
	buf__put(&w->pending, KILN_MAGIC, 8);
	buf__u32(&w->pending, KILN_FORMAT_VERSION);
	buf__u32(&w->pending, KILN_HEADER_SIZE);
	return w;
}

void stream_writer__set_fd(struct stream_writer *w, int fd)
{
	w->fd = fd;
}

struct stream_writer *stream_writer__open(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return NULL;
	struct stream_writer *w = stream_writer__new();
	w->fd = fd;
	w->own_fd = true;
	return w;
}

const void *stream_writer__pending(const struct stream_writer *w, size_t *len)
{
	*len = w->pending.len;
	return w->pending.data;
}

void stream_writer__set_compress(struct stream_writer *w, bool on)
{
	w->compress = on;
}

static void put_record(struct buf *b, uint16_t type, const void *payload, size_t len)
{
	buf__u16(b, type);
	buf__u16(b, 0);
	buf__u32(b, (uint32_t)len);
	buf__u32(b, (uint32_t)crc32(0L, payload, (uInt)len));
	buf__put(b, payload, len);
}

/* Replace pending's records (after the file header, if it is still to be
 * written) by ZBLOCKs of at most KILN_ZBLOCK_TARGET raw bytes each (a
 * record larger than that alone in its block). Left as they are when
 * compression fails or does not pay. */
static void compress_pending(struct stream_writer *w)
{
	size_t start = w->written ? 0 : KILN_HEADER_SIZE;
	if (w->pending.len <= start + KILN_REC_HEADER)
		return;
	if (!w->cctx && !(w->cctx = ZSTD_createCCtx()))
		return;
	struct buf out, raw;
	buf__init(&out);
	buf__init(&raw);
	buf__put(&out, w->pending.data, start);
	size_t off = start;
	bool ok = true;
	while (ok && off < w->pending.len) {
		size_t end = off;
		while (end + KILN_REC_HEADER <= w->pending.len) {
			uint32_t len;
			memcpy(&len, w->pending.data + end + 4, 4);
			size_t next = end + KILN_REC_HEADER + len;
			if (next > w->pending.len || (end > off && next - off > KILN_ZBLOCK_TARGET))
				break;
			end = next;
		}
		if (end == off) { /* cannot happen with records this writer made */
			ok = false;
			break;
		}
		size_t bound = ZSTD_compressBound(end - off);
		raw.len = 0;
		buf__u32(&raw, (uint32_t)(end - off));
		buf__reserve(&raw, bound);
		size_t k = ZSTD_compressCCtx(w->cctx, raw.data + 4, bound, w->pending.data + off, end - off, 3);
		if (ZSTD_isError(k)) {
			ok = false;
			break;
		}
		raw.len = 4 + k;
		put_record(&out, REC_ZBLOCK, raw.data, raw.len);
		off = end;
	}
	if (ok && out.len < w->pending.len) {
		buf__release(&w->pending);
		w->pending = out;
	} else {
		buf__release(&out);
	}
	buf__release(&raw);
}

void stream_writer__record(struct stream_writer *w, uint16_t type, const void *payload, size_t len)
{
	if (len > KILN_REC_MAX)
		len = KILN_REC_MAX; /* never happens with kiln's own writers */
	put_record(&w->pending, type, payload, len);
}

/* The end of the last whole record within the first n bytes of pending
 * (which starts with a record, or the file header). */
static size_t whole_records(const struct stream_writer *w, size_t n)
{
	size_t off = w->written ? 0 : KILN_HEADER_SIZE, last = 0;
	if (off > n)
		return 0;
	last = off;
	while (off + KILN_REC_HEADER <= w->pending.len) {
		uint32_t len;
		memcpy(&len, w->pending.data + off + 4, 4);
		size_t end = off + KILN_REC_HEADER + len;
		if (end > n)
			break;
		last = off = end;
	}
	return last;
}

int stream_writer__flush(struct stream_writer *w)
{
	if (w->err)
		return w->err;
	if (!w->pending.len || w->fd < 0)
		return 0;
	if (w->compress)
		compress_pending(w);
	size_t done = 0;
	int r = 0;
	while (done < w->pending.len) {
		ssize_t k = write(w->fd, w->pending.data + done, w->pending.len - done);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			r = k < 0 ? -errno : -EIO;
			break;
		}
		done += (size_t)k;
	}
	if (r < 0) {
		/* Keep every whole record that reached the file (a disk that
		 * fills keeps what fitted); cut a torn one off. */
		size_t keep = whole_records(w, done);
		w->lost_bytes += w->pending.len - keep;
		if (ftruncate(w->fd, (off_t)(w->written + keep)) == 0)
			lseek(w->fd, (off_t)(w->written + keep), SEEK_SET);
		w->written += keep;
		w->pending.len = 0;
		w->err = r;
		return r;
	}
	w->written += w->pending.len;
	w->pending.len = 0;
	return 0;
}

size_t stream_writer__lost(const struct stream_writer *w)
{
	return w->lost_bytes;
}

size_t stream_writer__bytes(const struct stream_writer *w)
{
	return w->written + w->pending.len;
}

int stream_writer__free(struct stream_writer *w)
{
	if (!w)
		return 0;
	int r = stream_writer__flush(w);
	if (!r && w->fd >= 0 && fsync(w->fd) < 0 && errno != EINVAL && errno != EROFS)
		r = -errno;
	if (w->own_fd && close(w->fd) < 0 && !r)
		r = -errno;
	buf__release(&w->pending);
	ZSTD_freeCCtx(w->cctx);
	free(w);
	return r;
}

/* Exactly n bytes from the file at r->off into out (the memory image or the
 * descriptor); how many were there (fewer only at the end of the file). */
static size_t reader_get(struct stream_reader *r, void *out, size_t n)
{
	if (r->fd < 0) {
		size_t k = r->len - r->off < n ? r->len - r->off : n;
		memcpy(out, r->data + r->off, k);
		return k;
	}
	size_t got = 0;
	while (got < n) {
		ssize_t k = read(r->fd, (unsigned char *)out + got, n - got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			if (k < 0)
				r->read_errno = errno;
			break;
		}
		got += (size_t)k;
	}
	return got;
}

static int reader_check_header(struct stream_reader *r)
{
	unsigned char h[KILN_HEADER_SIZE];
	r->off = 0;
	r->status = STREAM_OK;
	size_t got = reader_get(r, h, sizeof(h));
	if (r->read_errno) {
		snprintf(r->err, sizeof(r->err), "read error: %s", strerror(r->read_errno));
		return -1;
	}
	if (got == 0) {
		snprintf(r->err, sizeof(r->err), "empty file, not a kiln profile");
		return -1;
	}
	if (got < KILN_HEADER_SIZE || memcmp(h, KILN_MAGIC, 8)) {
		snprintf(r->err, sizeof(r->err), "not a kiln profile (bad magic)");
		return -1;
	}
	uint32_t ver, hsz;
	memcpy(&ver, h + 8, 4);
	memcpy(&hsz, h + 12, 4);
	if (ver != KILN_FORMAT_VERSION) {
		snprintf(r->err, sizeof(r->err), "unsupported profile format version %u (this kiln reads %u)",
			 ver, KILN_FORMAT_VERSION);
		return -1;
	}
	if (hsz != KILN_HEADER_SIZE) {
		snprintf(r->err, sizeof(r->err), "corrupt header (size %u)", hsz);
		return -1;
	}
	r->off = KILN_HEADER_SIZE;
	return 0;
}

int stream_reader__open_mem(struct stream_reader *r, const void *p, size_t n)
{
	memset(r, 0, sizeof(*r));
	r->fd = -1;
	r->data = xmalloc(n ? n : 1);
	if (n)
		memcpy(r->data, p, n);
	r->len = n;
	return reader_check_header(r);
}

int stream_reader__open(struct stream_reader *r, const char *path)
{
	memset(r, 0, sizeof(*r));
	bool in = !strcmp(path, "-"); /* standard input: kiln record -o - ... | kiln report - */
	r->fd = in ? fcntl(0, F_DUPFD_CLOEXEC, 3) : open(path, O_RDONLY | O_CLOEXEC);
	if (r->fd < 0) {
		snprintf(r->err, sizeof(r->err), "%s", in ? "no standard input to read" : strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(r->fd, &st) < 0 || (!S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode))) {
		snprintf(r->err, sizeof(r->err), "%s",
			 S_ISDIR(st.st_mode) ? "is a directory"
			 : in && isatty(r->fd) ? "standard input is a terminal: pipe a profile in (kiln record -o - ... | kiln report -)"
			 : in ? "standard input is not a file or a pipe"
			      : "not a regular file");
		close(r->fd);
		r->fd = -1;
		return -1;
	}
	/* read as a stream, a record at a time: memory follows what the
	 * profile holds, not the size of the file (a huge or sparse one is
	 * refused at its first bad record, having read no further) */
	return reader_check_header(r);
}

/* The next record of the ZBLOCK being read (1), or 0 when it is done. */
static int zblock_next(struct stream_reader *r, uint16_t *type, const unsigned char **payload, uint32_t *len)
{
	if (r->zoff >= r->zlen)
		return 0;
	uint16_t t, zero;
	uint32_t n, crc;
	if (r->zlen - r->zoff < KILN_REC_HEADER)
		goto bad;
	memcpy(&t, r->z + r->zoff, 2);
	memcpy(&zero, r->z + r->zoff + 2, 2);
	memcpy(&n, r->z + r->zoff + 4, 4);
	memcpy(&crc, r->z + r->zoff + 8, 4);
	if (zero != 0 || t == 0 || t == REC_ZBLOCK || n > r->zlen - r->zoff - KILN_REC_HEADER)
		goto bad;
	const unsigned char *p = r->z + r->zoff + KILN_REC_HEADER;
	if (!stream_ignore_crc && (uint32_t)crc32(0L, p, n) != crc)
		goto bad;
	r->zoff += KILN_REC_HEADER + n;
	*type = t;
	*payload = p;
	*len = n;
	return 1;
bad:
	snprintf(r->err, sizeof(r->err), "corrupt record at byte %zu of the compressed block at byte %zu", r->zoff,
		 r->zat);
	return -1;
}

/* A ZBLOCK's payload: decompressed into r->z (bounded by KILN_ZBLOCK_MAX and
 * by the size the frame itself declares). 0, or -1 with r->err set. */
static int zblock_open(struct stream_reader *r, const unsigned char *p, uint32_t n, size_t at)
{
	uint32_t raw;
	if (n < 4)
		goto bad;
	memcpy(&raw, p, 4);
	if (raw == 0 || raw > KILN_ZBLOCK_MAX || ZSTD_getFrameContentSize(p + 4, n - 4) != raw)
		goto bad;
	if (raw > r->zcap) {
		free(r->z);
		r->z = xmalloc(raw);
		r->zcap = raw;
	}
	size_t k = ZSTD_decompress(r->z, raw, p + 4, n - 4);
	if (ZSTD_isError(k) || k != raw)
		goto bad;
	r->zlen = raw;
	r->zoff = 0;
	r->zat = at;
	r->zblocks++;
	r->zbytes += raw;
	return 0;
bad:
	r->zlen = r->zoff = 0;
	snprintf(r->err, sizeof(r->err), "corrupt compressed block at byte %zu", at);
	return -1;
}

int stream_reader__next(struct stream_reader *r, uint16_t *type, const unsigned char **payload, uint32_t *len)
{
	for (;;) {
		int k = zblock_next(r, type, payload, len);
		if (k)
			return k;
		size_t at = r->off;
		k = stream_reader__next_raw(r, type, payload, len);
		if (k <= 0 || *type != REC_ZBLOCK)
			return k;
		if (zblock_open(r, *payload, *len, at) < 0)
			return -1;
	}
}

int stream_reader__next_raw(struct stream_reader *r, uint16_t *type, const unsigned char **payload, uint32_t *len)
{
	unsigned char h[KILN_REC_HEADER];
	size_t got = reader_get(r, h, sizeof(h));
	if (r->read_errno) {
		snprintf(r->err, sizeof(r->err), "read error at byte %zu: %s", r->off, strerror(r->read_errno));
		return -1;
	}
	if (got == 0)
		return 0;
	if (got < KILN_REC_HEADER) {
		r->status = STREAM_TRUNCATED;
		snprintf(r->err, sizeof(r->err), "cut short at byte %zu (a partial record)", r->off);
		return 0;
	}
	uint16_t t, zero;
	uint32_t n, crc;
	memcpy(&t, h, 2);
	memcpy(&zero, h + 2, 2);
	memcpy(&n, h + 4, 4);
	memcpy(&crc, h + 8, 4);
	if (zero != 0 || t == 0 || n > KILN_REC_MAX) {
		snprintf(r->err, sizeof(r->err), "corrupt record header at byte %zu", r->off);
		return -1;
	}
	const unsigned char *p;
	if (r->fd < 0) {
		if ((size_t)n > r->len - r->off - KILN_REC_HEADER) {
			r->status = STREAM_TRUNCATED;
			snprintf(r->err, sizeof(r->err), "cut short at byte %zu (a partial record)", r->off);
			return 0;
		}
		p = r->data + r->off + KILN_REC_HEADER;
	} else {
		if (n > r->cap) {
			size_t cap = r->cap ? r->cap : 4096;
			while (cap < n)
				cap *= 2;
			free(r->buf);
			r->buf = xmalloc(cap);
			r->cap = cap;
		}
		size_t k = reader_get(r, r->buf, n);
		if (r->read_errno) {
			snprintf(r->err, sizeof(r->err), "read error at byte %zu: %s", r->off, strerror(r->read_errno));
			return -1;
		}
		if (k < n) {
			r->status = STREAM_TRUNCATED;
			snprintf(r->err, sizeof(r->err), "cut short at byte %zu (a partial record)", r->off);
			return 0;
		}
		p = r->buf;
	}
	if (!stream_ignore_crc && (uint32_t)crc32(0L, p, n) != crc) {
		snprintf(r->err, sizeof(r->err), "corrupt record at byte %zu (checksum mismatch)", r->off);
		return -1;
	}
	r->off += KILN_REC_HEADER + n;
	*type = t;
	*payload = p;
	*len = n;
	return 1;
}

void stream_reader__release(struct stream_reader *r)
{
	free(r->data);
	free(r->buf);
	free(r->z);
	r->z = NULL;
	r->zlen = r->zoff = r->zcap = 0;
	if (r->fd >= 0)
		close(r->fd);
	r->data = r->buf = NULL;
	r->fd = -1;
	r->len = r->off = r->cap = 0;
}
