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
