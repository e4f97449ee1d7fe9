/* libFuzzer target for the profile reader: every byte string must load or
 * be refused with a message, and every view of what loads (and of a
 * stretch of its time) must build, without a crash, a leak or undefined
 * behaviour (built with ASan+UBSan). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "aggregate/profile.h"
#include "aggregate/view.h"
#include "export/export.h"
#include "stream/stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct profile p;
	char err[512];
	stream_ignore_crc = size & 1; /* half the inputs: past the checksums, into the decoders */
	if (profile__load_mem(&p, data, size, err, sizeof(err)) == 0) {
		FILE *null = fopen("/dev/null", "w");
		for (int m = 0; m < KM__COUNT; m++) {
			struct view_filter vf = {.metric = m, .pid = -1, .tid = -1, .threads = m & 1};
			struct table t;
			table__build(&t, &p, &vf, m % 5);
			table__sort(&t, m & 1);
			export__table_text(null, &p, &t, 10, m & 1);
			table__release(&t);
			if (m == profile__default_metric(&p)) {
				export__folded(null, &p, &vf);
				struct svg_opts so = {.width = 1200};
				export__svg(null, &p, &vf, &so);
				export__speedscope(null, &p, &vf);
				export__pprof(null, &p, &vf);
				export__json(null, &p);
			}
		}
		/* a stretch of time from the windows, and its views (svg with its time data) */
		double from = (double)(size % 7) / 10, to = from + (double)(size % 3) / 10;
		if (profile__time_range(&p, &from, &to, err, sizeof(err)) == 0) {
			struct view_filter vf = {.metric = size & 2 ? KM_LIVE_BYTES : KM_CPU, .pid = -1, .tid = -1};
			export__folded(null, &p, &vf);
			struct svg_opts so = {.width = 1200};
			export__svg(null, &p, &vf, &so);
		} else if (!err[0]) {
			__builtin_trap();
		}
		fclose(null);
	} else if (!err[0]) {
		__builtin_trap(); /* a refusal must say why */
	}
	profile__release(&p);
	return 0;
}
