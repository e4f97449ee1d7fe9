/* Names of the metrics, shared by every stage (see include/kiln/kiln.h). */
#include <string.h>
#include "kiln/kiln.h"

static const char *const names[KM__COUNT] = {
	[KM_CPU] = "cpu",
	[KM_WALL] = "wall",
	[KM_ALLOC_BYTES] = "alloc_bytes",
	[KM_ALLOC_COUNT] = "alloc_count",
	[KM_LEAK_BYTES] = "leak_bytes",
	[KM_LEAK_COUNT] = "leak_count",
	[KM_PEAK_BYTES] = "peak_bytes",
	[KM_TEMP_COUNT] = "temp_count",
	[KM_LIVE_BYTES] = "live_bytes",
	[KM_LIVE_COUNT] = "live_count",
};

const char *kiln_metric__name(int metric)
{
	return metric >= 0 && metric < KM__COUNT ? names[metric] : NULL;
}

int kiln_metric__parse(const char *name)
{
	for (int i = 0; i < KM__COUNT; i++)
		if (!strcmp(names[i], name))
			return i;
	return -1;
}

int kiln_metric__is_bytes(int metric)
{
	return metric == KM_ALLOC_BYTES || metric == KM_LEAK_BYTES ||
	       metric == KM_PEAK_BYTES || metric == KM_LIVE_BYTES;
}

static const char *const loss_names[HL__COUNT] = {
	[HL_NO_RING] = "no_ring",
	[HL_CORRUPT] = "ring_corrupt",
	[HL_STOPPED] = "recorder_stopped",
	[HL_REFUSED] = "ring_refused",
	[HL_STATIC] = "static_binary",
	[HL_ENV_CLEARED] = "environment_cleared",
	[HL_SECURE_EXEC] = "secure_exec",
	[HL_SAMPLE_FULL] = "sample_set_full",
};

static const char *const loss_why[HL__COUNT] = {
	[HL_NO_RING] = "the shim could not make or hand over a ring (memory or descriptors exhausted)",
	[HL_CORRUPT] = "a ring was written over (the program scribbled on kiln's shared memory)",
	[HL_STOPPED] = "the recorder drained nothing of a full ring for 5 s (stopped or starved); the program ran on",
	[HL_REFUSED] = "rings beyond the recorder's limits",
	[HL_STATIC] = "statically linked: there is no allocator to preload into",
	[HL_ENV_CLEARED] = "exec'd with kiln's LD_PRELOAD removed from the environment",
	[HL_SECURE_EXEC] = "a setuid/setgid program: the loader ignores LD_PRELOAD for it",
	[HL_SAMPLE_FULL] = "allocations --heap-sample drew but could not follow (262,144 sampled blocks live at once)",
};

const char *kiln_heap_loss__name(int cause)
{
	return cause >= 0 && cause < HL__COUNT ? loss_names[cause] : "unknown";
}

const char *kiln_heap_loss__why(int cause)
{
	return cause >= 0 && cause < HL__COUNT ? loss_why[cause] : "unknown cause";
}
