/* Exporters: each prints a view of a loaded profile in one format. They
 * compute nothing of their own beyond layout; the numbers come from
 * src/aggregate. To add one, see docs/adding-an-exporter.md. */
#ifndef KILN_EXPORT_H
#define KILN_EXPORT_H

#include <stdbool.h>
#include <stdio.h>
#include "aggregate/view.h"

/* Brendan Gregg's folded format: "root;...;leaf VALUE\n" per distinct stack. */
int export__folded(FILE *f, const struct profile *p, const struct view_filter *vf);

/* The report: a header saying what was recorded, a heap summary when the
 * file has heap data, then the cumulative table. */
void export__report_header(FILE *f, const struct profile *p, const struct view_filter *vf);
/* The timed waits kiln's stops ended (meta.waits_ended.timed): said on f
 * as "# waits: WHO ended N waits ..." when there were any (f NULL: not
 * said). Their count. */
long long export__waits_line(FILE *f, const struct profile *p, const char *who);
void export__heap_summary(FILE *f, const struct profile *p, const struct view_filter *vf);
void export__table_text(FILE *f, const struct profile *p, const struct table *t, long limit, bool sort_self);
void export__table_json(FILE *f, const struct profile *p, const struct table *t, long limit, bool sort_self,
			const struct view_filter *vf);

/* speedscope's file format: one sampled profile per thread. */
int export__speedscope(FILE *f, const struct profile *p, const struct view_filter *vf);
/* Everything aggregated, for scripts (schema in docs/json-format.md). */
int export__json(FILE *f, const struct profile *p);
/* gzipped pprof profile.proto. */
int export__pprof(FILE *f, const struct profile *p, const struct view_filter *vf);

struct svg_opts {
	const char *title;
	bool inverted;
	int width;
};
/* A self-contained interactive SVG flamegraph. */
int export__svg(FILE *f, const struct profile *p, const struct view_filter *vf, const struct svg_opts *o);
/* A differential flamegraph: widths by the new profile, colour by change. */
int export__svg_diff(FILE *f, const struct folded *base, const struct folded *new_, int metric,
		     const struct svg_opts *o);

void export__diff_text(FILE *f, const struct diff *d, int metric, const char *unit, long limit);
void export__diff_json(FILE *f, const struct diff *d, int metric, const char *by, long limit);
void export__diff_folded(FILE *f, const struct diff *d);

/* Memory over time as CSV: seconds,pid,heap_live_bytes,rss_bytes (pid 0:
 * every process together, shown when there are several). */
int export__timeline_csv(FILE *f, const struct profile *p, const struct view_filter *vf);
/* Whether a profile's timeline names more than one process (then pid 0,
 * every process together, is shown too: the recording's peak is its
 * maximum). */
bool export__timeline_several(const struct profile *p);
/* Whether a point is on the one curve drawn of a timeline: pid's (>= 0), or
 * else every process together where there are several (multi), else the
 * one process's. */
bool export__timeline_curve(const struct ppoint *pt, int64_t pid, bool multi);
/* The live heap over time as `width` UTF-8 bars into out (3 bytes a bar);
 * returns width, or 0 when the profile has no heap timeline. *max: the
 * largest point. */
int export__sparkline(const struct profile *p, int width, char *out, size_t outlen, int64_t *max);
/* The Firefox Profiler's processed format: threads with their stacks, and
 * the timeline as memory counters. */
int export__firefox(FILE *f, const struct profile *p, const struct view_filter *vf);

/* asyncio: the stretches in which one callback held an event loop at
 * least min_ns (longest first), with task, thread, start and where. */
void export__slow_text(FILE *f, const struct profile *p, const struct view_filter *vf, uint64_t min_ns);
void export__slow_json(FILE *f, const struct profile *p, const struct view_filter *vf, uint64_t min_ns);

/* "" for a metric whose figures are exact; for a heap metric of a sampled
 * profile (record --heap-sample) " (estimated: --heap-sample 512 KiB)",
 * which every exporter that has room for words puts by the metric's name. */
const char *export__estimated(const struct profile *p, int metric, char *buf, size_t n);

/* "12.3 MiB" for byte metrics, a plain count otherwise. */
void export__fmt_value(char *out, size_t n, int metric, double v);

#endif
