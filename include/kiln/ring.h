/* The shared-memory ring between the heap shim (inside the profiled program)
 * and the recorder (kiln record), and the socket messages that hand rings
 * over. One ring per thread at a time, single producer (the thread), single
 * consumer (the recorder).
 *
 *   shim thread ── memfd_create, seal (no shrink, no grow), map ──┐
 *               ── MSG_RING + the descriptor (SCM_RIGHTS) ──► recorder maps it
 *
 * The channel is a SOCK_SEQPACKET socket the recorder hands the launched
 * program (inherited, so it survives setuid and exec; $KILN_FD names it as
 * "FD:INODE"), or, when a program closed it, a connection to $KILN_SOCK in
 * the recorder's private folder. No ring is ever a file another user can
 * open, delete or truncate.
 *
 * Rings start small (KILN_RING_WORDS_MIN) and a busy thread continues in a
 * ring twice as large (prev_id names the ring it continues, which it closes):
 * memory follows traffic, not thread count. Events are 64-bit words:
 *
 *   ALLOC  w0 = seq << 8 | RING_ALLOC   w1 = addr  w2 = size  w3 = stack id
 *   FREE   w0 = seq << 8 | RING_FREE    w1 = addr
 *   NOP    w0 = seq << 8 | RING_NOP     w1 = 0      (a seq taken, nothing freed)
 *   PYCODE w0 = n << 8 | RING_PYCODE   w1 = code object address
 *          w2 = co_firstlineno << 32 | qualname kind << 8 | file kind (1, 2 or 4 bytes a character)
 *          w3 = qualname length | file length << 16 | location table bytes << 32
 *          w4.. the three, raw and packed, n words in all (a code object's
 *          names, sent once per thread before the first STACK naming it:
 *          the recorder has them even when the object is freed before it
 *          reads it, as a module's body is once imported)
 *   PYFIN  w0 = seq << 8 | RING_PYFIN   w1 = 0      (CPython began tearing its modules
 *          down: what is live now is what the program left; later events are
 *          the interpreter's own clean-up, not counted)
 *   STACK  w0 = npy << 40 | trunc << 32 | n << 8 | RING_STACK   w1 = stack id
 *          w2.. = n words: n - 2*npy return addresses, then npy Python frames
 *          of two words each (KILN_PY_TAG | flags | code object, instruction
 *          index: include/kiln/python.h), innermost first
 *
 * seq orders a process image's events across its threads: the recorder
 * merges the image's rings in seq order, so a block freed by another thread
 * than the one that allocated it is seen in the right order. Three ways to
 * number, one at a time per image (shim_int.h, seq.c):
 *   - owner: while one thread alone has a ring, it counts 0, 1, 2, ...;
 *   - counter: threads share one atomic counter, seqs dense; a thread takes
 *     its seq only once it has room and publishes right after, so a missing
 *     seq is always about to appear (or its process died);
 *   - stamps: each event's seq is the time stamp counter (rdtsc - tsc0 +
 *     base, above every seq before): no write shared between threads. Seqs
 *     have gaps, so the recorder merges up to a watermark (heapsrc.c): the
 *     time it read before a process-wide barrier (membarrier), lowered to
 *     the bound of each ring whose thread is inside an event (hdr->busy:
 *     the thread's next seq is at least this) and held while a ring the
 *     image made (page->made) has not reached it. The image page, a sealed
 *     memfd sent with every ring made once stamps are on, carries tsc0,
 *     base and the count of rings made. Stack ids are per thread,
 * dense from 0, kept across the thread's rings; a STACK record precedes the
 * first event that uses it, in the same ring.
 *
 * The recorder trusts nothing here: the header is copied once, head - tail is
 * bounded by the capacity, every event is checked; a ring that breaks a rule
 * is marked RING_R_CORRUPT (its thread stops recording) and counted as lost. */
#ifndef KILN_RING_H
#define KILN_RING_H

#include <stdint.h>

#define KILN_RING_MAGIC 0x676e69726e6c696bULL /* "kilnring" */
#define KILN_RING_VERSION 6
#define KILN_RING_HDR_SIZE 256
#define KILN_RING_WORDS_TINY (1u << 9)  /* 4 KiB: a new thread's ring once a process holds many */
#define KILN_RING_WORDS_MIN (1u << 11)  /* 16 KiB: a new thread's ring */
#define KILN_RING_WORDS_MAX (1u << 20)  /* 8 MiB: the largest a busy thread grows to */
/* Bytes of rings one process holds before new threads get tiny rings and
 * busy ones stop growing (and wait for the recorder instead). */
#define KILN_RING_PROC_BUDGET (64ull << 20)
/* How long a thread waits for a recorder that drains nothing of its
 * process's rings (tail and beat both still) before it drops events (counted) and runs on. A recorder that drains
 * slowly is waited for: on a loaded machine it can be starved for a second
 * and more (CI: two parallel tests beside CPU hogs), and dropping then made
 * an exact heap inexact. A stopped recorder (Ctrl-Z on an attach) stalls
 * the program this long once, then it runs on, dropping, until the recorder
 * catches up. */
#define KILN_RING_WAIT_NS 5000000000ull

enum { RING_ALLOC = 1, RING_FREE = 2, RING_STACK = 3, RING_NOP = 4, RING_PYFIN = 5, RING_PYCODE = 6 };
#define KILN_PYCODE_QUAL_MAX 256   /* characters of a qualified name sent */
#define KILN_PYCODE_FILE_MAX 512   /* characters of a file name sent */
#define KILN_PYCODE_TABLE_MAX 4096 /* bytes of a location table sent (a longer one: none) */
#define KILN_PYCODE_WORDS_MAX (4 + (KILN_PYCODE_QUAL_MAX * 4 + KILN_PYCODE_FILE_MAX * 4 + KILN_PYCODE_TABLE_MAX + 7) / 8)

struct kiln_ring_hdr {
	uint64_t magic;
	uint32_t version, hdr_size;
	uint32_t pid, tid;
	uint32_t ppid, pad0;
	uint64_t nonce;   /* one per process image (changes at exec) */
	uint64_t words;   /* capacity in words, a power of two */
	uint64_t ring_id; /* per process image, from 1 */
	uint64_t prev_id; /* the ring of the same thread this one continues, or 0 */
	uint64_t head;    /* offset 64: written by the producer (release) */
	uint64_t busy;    /* offset 72: stamps only: while the producer is inside an
			   * event, a bound its seq is at or above; 0 outside */
	uint64_t pad2[6];
	uint64_t tail;    /* offset 128: written by the consumer (release) */
	uint64_t beat;    /* offset 136: by the consumer, the next seq it waits for
			   * in this process image (moves with every event taken
			   * from any of its rings): a thread whose own ring waits
			   * behind the others sees it progress */
	uint64_t pad3[6];
	uint32_t closed;  /* offset 192: the producer will write no more */
	uint32_t flags;   /* by the producer: none defined yet (0) */
	uint32_t rflags;  /* RING_R_*, by the recorder */
	uint32_t pad4;
	uint64_t dropped; /* events the producer dropped (recorder not draining) */
	uint64_t unsent;  /* events of this process that had no ring and whose
			   * KILN_MSG_LOSS could not be sent: carried here */
	uint64_t pad5[4];
};
_Static_assert(sizeof(struct kiln_ring_hdr) == KILN_RING_HDR_SIZE, "ring header size");

#define RING_R_CORRUPT 1u    /* the recorder gave up on this ring: stop writing */
#define RING_R_MAPS 2u       /* the recorder has read this process image's maps: its
			      * stacks can be named even if it ends now */

/* The image page (stamps only): one per process image, made when it turns
 * to stamps, sent beside every ring made from then on. The recorder copies
 * magic to base once; made and failed it reads at each watermark. */
#define KILN_PAGE_MAGIC 0x6567617070616d69ULL /* "imappage" */
#define KILN_PAGE_SIZE 4096
struct kiln_image_page {
	uint64_t magic;
	uint32_t version, pad0;
	uint64_t nonce;   /* the image's (as its rings') */
	uint64_t tsc0;    /* seq = rdtsc - tsc0 + base */
	uint64_t base;    /* above every seq the image took before */
	uint64_t pad1[3];
	uint64_t made;    /* offset 64: rings made since the page (counted before each is sent) */
	uint64_t failed;  /* of those, rings that could not be sent */
};

/* Socket messages from the shim (SOCK_SEQPACKET, one per send). */
enum { KILN_MSG_RING = 1, KILN_MSG_LOSS = 2 };
struct kiln_msg {
	uint32_t magic; /* KILN_MSG_MAGIC */
	uint16_t type, version;
	uint32_t pid, tid;
	uint64_t cause, count; /* KILN_MSG_LOSS: enum kiln_heap_loss, events */
};
#define KILN_MSG_MAGIC 0x6b6d7367u

#endif
