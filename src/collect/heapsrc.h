/* The recorder's side of heap tracking: the shared-memory rings the shim
 * (src/shim) writes in every tracked process, drained into the recorder in
 * each process's own order of events. See include/kiln/ring.h. */
#ifndef KILN_COLLECT_HEAPSRC_H
#define KILN_COLLECT_HEAPSRC_H

#include <stdbool.h>

struct recorder;
struct heapsrc;

/* Create the ring folder (under /dev/shm). NULL and errno on failure. */
struct heapsrc *heapsrc__new(struct recorder *r);
/* The folder the shim is told of through KILN_SHM. */
const char *heapsrc__dir(const struct heapsrc *h);
/* Drain every ring; finish processes that have ended. Returns events seen. */
long heapsrc__poll(struct heapsrc *h);
/* Whether any process has written a ring (the shim is live somewhere). */
bool heapsrc__seen(const struct heapsrc *h);
/* Last drain: every process is treated as ended. */
void heapsrc__finish(struct heapsrc *h);
/* Remove the folder and free. */
void heapsrc__free(struct heapsrc *h);

#endif
