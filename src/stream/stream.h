/* Writing and reading the record stream of a profile file: framing, CRCs,
 * flushing and truncation. What a record's payload means is for its producer
 * (src/collect) and its consumer (src/aggregate); see format.h. */
#ifndef KILN_STREAM_H
#define KILN_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "stream/format.h"

struct stream_writer;

/* A writer whose records wait in memory until it is given a descriptor
 * (stream_writer__set_fd): the recorder collects before it knows that the
 * program runs, and only then puts its output in place. */
struct stream_writer *stream_writer__new(void);
/* From now on flushes write to fd (borrowed: __free does not close it). */
void stream_writer__set_fd(struct stream_writer *w, int fd);
/* Create (truncate) path, never through a symlink, for tests and tools that
 * own the path. NULL and errno on failure. */
struct stream_writer *stream_writer__open(const char *path);
/* The bytes not yet flushed (everything, for a writer with no descriptor). */
const void *stream_writer__pending(const struct stream_writer *w, size_t *len);
/* Whether flushes store their records compressed (zstd, one ZBLOCK per
 * flush; on unless turned off). */
void stream_writer__set_compress(struct stream_writer *w, bool on);
/* Append one record to the in-memory buffer. */
void stream_writer__record(struct stream_writer *w, uint16_t type, const void *payload, size_t len);
/* Write buffered records to the file. 0 or -errno (e.g. -ENOSPC): then the
 * file keeps the whole records that fitted, and the writer keeps failing. */
int stream_writer__flush(struct stream_writer *w);
size_t stream_writer__bytes(const struct stream_writer *w);
/* Bytes of records a failed flush could not write (the file keeps every
 * whole record before them). */
size_t stream_writer__lost(const struct stream_writer *w);
/* Flush, fsync, free (and close a descriptor it opened). 0 or -errno. */
int stream_writer__free(struct stream_writer *w);

enum stream_status {
	STREAM_OK = 0,        /* every record intact, ends with REC_END */
	STREAM_TRUNCATED = 1, /* intact up to a point, then cut short */
};

struct stream_reader {
	unsigned char *data; /* a memory image (stream_reader__open_mem), or NULL */
	size_t len, off;     /* off: where the next record starts in the file */
	int fd;              /* a file read as a stream (stream_reader__open), or -1 */
	unsigned char *buf;  /* the current record's payload (streamed), up to KILN_REC_MAX */
	size_t cap;
	int read_errno;
	int status;
	char err[256]; /* why the file was refused, or where it was cut */
	/* inside a ZBLOCK: its records, decompressed, read from z + zoff */
	unsigned char *z;
	size_t zlen, zoff, zcap, zat; /* zat: where the block starts in the file */
	uint64_t zblocks, zbytes;      /* blocks read, and their bytes decompressed */
};

/* Open path (a regular file or a FIFO) to be read as a stream, a record at
 * a time. 0, or -1 with r->err set ("not a kiln profile", ...). */
int stream_reader__open(struct stream_reader *r, const char *path);
/* Same from memory (copied); used by the fuzzer and tests. */
int stream_reader__open_mem(struct stream_reader *r, const void *p, size_t n);
/* Next record: 1 with type, payload and len set (valid until the next
 * call), 0 at the end (r->status tells clean or truncated), -1 on
 * corruption or a read error with r->err set. */
int stream_reader__next(struct stream_reader *r, uint16_t *type, const unsigned char **payload, uint32_t *len);
/* The same without opening ZBLOCKs: they come back as records of their own
 * (tools that look at the framing). */
int stream_reader__next_raw(struct stream_reader *r, uint16_t *type, const unsigned char **payload, uint32_t *len);
void stream_reader__release(struct stream_reader *r);

/* Fuzzing only: accept records whose CRC does not match, so mutated input
 * reaches the decoders instead of stopping at the checksum. */
extern int stream_ignore_crc;

#endif
