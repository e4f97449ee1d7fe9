/* The few types every stage of kiln shares: the metrics a profile carries and
 * the limits that bound what one stack may hold. Collectors produce values of
 * these metrics, the stream stores them, the aggregator sums them and the
 * exporters print them; keeping the list in one place keeps them in step. */
#ifndef KILN_KILN_H
#define KILN_KILN_H

#include <stdint.h>

enum kiln_metric {
	KM_CPU,
	KM_WALL,
	KM_ALLOC_BYTES,
	KM_ALLOC_COUNT,
	KM_LEAK_BYTES,
	KM_LEAK_COUNT,
	KM_PEAK_BYTES,
	KM_TEMP_COUNT,
	KM_LIVE_BYTES,
	KM_LIVE_COUNT,
	KM__COUNT
};

/* Metric name as users type it (`--metric alloc_bytes`), or NULL. */
const char *kiln_metric__name(int metric);
/* Metric id for a name, or -1. */
int kiln_metric__parse(const char *name);
/* Whether the metric counts bytes (for units in tables and flamegraphs). */
int kiln_metric__is_bytes(int metric);

/* Why heap events were lost. The first causes count events; the last ones
 * count processes whose heap kiln could not track at all. */
enum kiln_heap_loss {
	HL_NO_RING,     /* events: the shim could not make or hand over a ring (memory, descriptors) */
	HL_CORRUPT,     /* events: a ring broke the protocol (the program wrote over it); at least 1 */
	HL_STOPPED,     /* events: dropped after the recorder did not drain for a second (stopped, slow) */
	HL_REFUSED,     /* events: rings beyond the recorder's limits */
	HL_STATIC,      /* processes: statically linked, nothing to preload into */
	HL_ENV_CLEARED, /* processes: exec'd with kiln's LD_PRELOAD removed from the environment */
	HL_SECURE_EXEC, /* processes: a setuid/setgid exec, for which the loader ignores LD_PRELOAD */
	HL_SAMPLE_FULL, /* events: --heap-sample allocations not taken, the shim's set of taken blocks full */
	HL__COUNT
};
/* Whether a cause counts processes (untracked) rather than events. */
static inline int kiln_heap_loss__is_process(int cause)
{
	return cause >= HL_STATIC && cause <= HL_SECURE_EXEC;
}
/* "no ring", "ring corrupt", ...; and a sentence for reports. */
const char *kiln_heap_loss__name(int cause);
const char *kiln_heap_loss__why(int cause);

/* The deepest stack kiln keeps; deeper ones end in a truncation marker. */
#define KILN_MAX_DEPTH 256

/* Exit codes of the CLI (see docs/cli.md and the contract). */
enum {
	KILN_EXIT_OK = 0,
	KILN_EXIT_ERROR = 1,
	KILN_EXIT_USAGE = 2,
	KILN_EXIT_RECORD_FAIL = 125,
	KILN_EXIT_NOEXEC = 126,
	KILN_EXIT_NOTFOUND = 127,
};

#endif
