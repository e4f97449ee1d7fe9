/* The shared-memory ring between the heap shim (inside the profiled program)
 * and the recorder (kiln record). One ring per thread, a file in the folder
 * named by $KILN_SHM: "<pid>.<tid>.<nonce>.ring". Single producer (the
 * thread), single consumer (the recorder). Events are 64-bit words:
 *
 *   ALLOC  w0 = seq << 8 | RING_ALLOC   w1 = addr  w2 = size  w3 = stack id
 *   FREE   w0 = seq << 8 | RING_FREE    w1 = addr
 *   STACK  w0 = n << 8 | RING_STACK     w1 = stack id   w2.. = n return addresses
 *
 * seq is per process image, from one atomic counter: the recorder merges a
 * process's rings in seq order, so a block freed by another thread than the
 * one that allocated it is seen in the right order. A thread takes its seq
 * only once it has room in its ring and publishes right after, so a missing
 * seq is always about to appear (or its process died). Stack ids are
 * per ring; a STACK record precedes the first event that uses it. */
#ifndef KILN_RING_H
#define KILN_RING_H

#include <stdint.h>

#define KILN_RING_MAGIC 0x676e69726e6c696bULL /* "kilnring" */
#define KILN_RING_WORDS (1u << 20)             /* 8 MiB: a process's first rings */
#define KILN_RING_WORDS_SMALL (1u << 18)       /* 2 MiB: threads past the first few */
#define KILN_RING_BIG_RINGS 4                  /* how many rings of a process are big */

enum { RING_ALLOC = 1, RING_FREE = 2, RING_STACK = 3 };

struct kiln_ring_hdr {
	uint64_t magic;
	uint32_t pid, tid;
	uint64_t nonce;   /* one per process image (changes at exec) */
	uint64_t words;   /* capacity in words */
	uint64_t head;    /* written by the producer (release) */
	uint64_t pad1[7];
	uint64_t tail;    /* written by the consumer (release) */
	uint64_t pad2[7];
	uint32_t closed;  /* the thread has ended */
	uint32_t flags;   /* RING_F_* */
	uint64_t dropped; /* events dropped because the recorder went away */
};

#define RING_F_OWN_MALLOC 1u /* the program has its own malloc: kiln sees nothing */
#define KILN_RING_HDR_SIZE 4096

#endif
