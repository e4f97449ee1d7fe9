/* heapsrc's own: the rings of each process image as the recorder drains
 * them (heapsrc.c) and, where the image stamps its events, the watermark
 * that orders them (heapsrc_stamps.c). */
#ifndef KILN_COLLECT_HEAPSRC_INT_H
#define KILN_COLLECT_HEAPSRC_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kiln/ring.h"
#include "util/util.h"

#define NO_SEQ UINT64_MAX
#define STALL_NS 1000000000ull

/* Stack ids of one chain of rings (a thread's rings, each continuing the
 * one before: ids dense from 0 across them). */
struct stab {
	uint32_t *cells; /* id -> recorder cell */
	size_t n, cap;
};

struct hring {
	struct kiln_ring_hdr *hdr;
	size_t maplen;
	uint64_t *data;
	uint64_t mask, words; /* copied once: never re-read from the ring */
	uint64_t tail, head;  /* head: last seen, reloaded when reached */
	uint64_t last_seq;    /* of the last event consumed (seqs rise in a ring) */
	bool any;
	uint64_t front;       /* seq of the next event, or NO_SEQ */
	uint64_t dropped_seen, unsent_seen;
	uint32_t pid, tid;
	struct rproc *proc;
	struct stab *stab;
	int heap_idx;         /* in the group's heap, or -1 */
	bool corrupt;
	uint64_t ring_id;
	struct hring *pred;   /* the ring of this thread it continues, until drained */
};

/* A heap entry carries its ring's front seq: sifting reads no ring. */
struct hent {
	uint64_t front;
	struct hring *rg;
};

struct hgroup {
	uint32_t pid;
	uint64_t nonce;
	uint64_t next_seq;
	struct hring **rings;
	size_t n, cap;
	struct hent *heap; /* min-heap by front */
	size_t nheap, cheap;
	struct stab **stabs;
	size_t nstabs, cstabs;
	struct u64map chain; /* id of a chain's newest ring -> stab index + 1 */
	struct hgroup *older; /* an older image of this pid, to finish first */
	bool maps_read;       /* its maps were read when its first ring came */
	bool ending, ended, lossy;
	bool gone; /* its process was seen gone: ended at the next poll, after the
		    * channel has been read once more (a ring it sent just before
		    * exiting may still be in the socket) */
	uint64_t stall_since, stall_seq;
	/* stamps (heapsrc_stamps.c): its image page, copied once where it
	 * defines; rings received; the watermark and its stall */
	struct kiln_image_page *page;
	uint64_t offset, base; /* seq = tsc + offset (the page's base - tsc0) */
	uint64_t rings_recv, forgive;
	uint64_t wmark, stall_wm;
};

struct heapsrc {
	struct recorder *r;
	struct hgroup **groups;
	size_t ngroups, cgroups;
	struct u64map gidx; /* hash(pid, nonce) -> group index + 1 */
	size_t nrings;
	uint64_t mapped;
	uint64_t stamped; /* process images that ordered their events by stamps */
	uint64_t last_check;
	bool seen;
};

/* heapsrc.c: rings with nothing ready may have something now */
void heapsrc_refresh_idle(struct heapsrc *h, struct hgroup *g);
/* fd is a regular file sealed against shrinking and growing, of size
 * within [lo, hi] (*size set): a ring or an image page as the shim makes
 * them, no file another user can change under the recorder. */
bool heapsrc_sealed(int fd, size_t lo, size_t hi, size_t *size);
/* The group has been held at key (*at remembers it) for STALL_NS: the
 * order waited for is given up on (a seq never written, a ring never
 * sent); the timer restarts whenever the key moves. */
bool heapsrc_held_too_long(struct hgroup *g, uint64_t *at, uint64_t key);

/* heapsrc_stamps.c */
/* The image page sent with a ring (page_fd, taken over): mapped once per
 * group, checked like a ring; every ring received is counted. */
void stamps_ring_received(struct heapsrc *h, struct hgroup *g, int page_fd);
/* Whether the group's next event (seq) may be taken: 1 yes, 0 not yet,
 * -1 the watermark was moved (look at the front again). marks: how many
 * times this drain has moved it. */
int stamps_gate(struct heapsrc *h, struct hgroup *g, uint64_t seq, int *marks);
void stamps_release(struct hgroup *g);

#endif
