/* The recorder's side of heap tracking: the shared-memory rings the shim
 * (src/shim) writes in every tracked process, received through the channel
 * (collect/channel.h), checked as untrusted input, and drained into the
 * recorder in each process's own order of events. See include/kiln/ring.h. */
#ifndef KILN_COLLECT_HEAPSRC_H
#define KILN_COLLECT_HEAPSRC_H

#include <stdbool.h>
#include <stdint.h>
#include "kiln/ring.h"

struct recorder;
struct heapsrc;

struct heapsrc *heapsrc__new(struct recorder *r);
/* A ring handed over by a shim (fd is taken over: mapped or closed). */
void heapsrc__add_ring(struct heapsrc *h, const struct kiln_msg *m, int fd, int page_fd);
/* A loss a shim reports (events it could not put in any ring). */
void heapsrc__loss(struct heapsrc *h, const struct kiln_msg *m);
/* Drain every ring; finish processes that have ended. Returns events seen. */
long heapsrc__poll(struct heapsrc *h);
/* Whether any process has handed over a ring (the shim is live somewhere). */
bool heapsrc__seen(const struct heapsrc *h);
/* Process images whose events were ordered by time stamps (ring.h). */
uint64_t heapsrc__stamped(const struct heapsrc *h);
/* Last drain: every process is treated as ended. */
void heapsrc__finish(struct heapsrc *h);
void heapsrc__free(struct heapsrc *h);

/* Limits on what the programs may make the recorder map. */
#define HEAPSRC_MAX_RINGS 131072
#define HEAPSRC_MAX_BYTES (16ull << 30)
/* No block is larger than a user address space (x86-64: 2^47). */
#define HEAPSRC_MAX_BLOCK (1ull << 47)

#endif
