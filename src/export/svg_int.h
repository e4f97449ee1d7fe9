/* What the SVG flamegraph's files share: svg.c draws the tree, svg_time.c
 * writes what the embedded script needs to draw it again for a stretch of
 * time chosen on the memory chart. */
#ifndef KILN_EXPORT_SVG_INT_H
#define KILN_EXPORT_SVG_INT_H

#include <stdint.h>
#include <stdio.h>
#include "aggregate/profile.h"
#include "aggregate/view.h"
#include "util/util.h"

struct node {
	uint32_t name, file, line, parent;
	uint8_t kind;
	int64_t value, base;
	uint32_t first, next; /* children list (UINT32_MAX ends) */
};

struct tree {
	struct node *n;
	size_t len, cap;
	struct intern keys;  /* {parent, name} -> node */
	struct intern names; /* strings */
	uint32_t *name_of_sid; /* profile string id -> names id + 1, when built from a profile */
	int depth;
};

struct tframe {
	const char *name;
	const char *file;
	uint32_t line;
	uint8_t kind;
	uint32_t sid; /* the name's id in the profile's strings (UINT32_MAX: none) */
};

/* A frame's fill by its kind, the shade from its name. */
void svg_kind_colour(char *out, size_t n, uint8_t kind, const char *name);

/* The chart's geometry: x0 and w in pixels, t0_ns its left edge (the
 * recording's start), span_ns its width in time. */
struct svg_chart {
	double x0, w;
	uint64_t t0_ns, span_ns;
};

/* The series a metric's flamegraph shows for a stretch of time: what came
 * in it (*in) and, for the heap, what was live at its end (*live; -1 for
 * cpu and wall). */
void svg_time_series(int metric, int *in, int *live);

/* The time data of a profile's flamegraph (nothing when it has no time
 * windows or the metric is not one a stretch holds): the tree's nodes, and
 * per stretch of time (windows merged so at most SVG_TIME_GROUPS remain)
 * what each node's cells gained, as an XML-escaped JSON element
 * <script id="timedata" type="application/json">. leaf[cell] is the cell's
 * node (UINT32_MAX: not in the tree). Returns whether it wrote any (a
 * tree too large for it gets {"off": frames}, which the chart says). */
bool svg_time_data(FILE *f, const struct profile *p, const struct tree *t, const uint32_t *leaf, int metric,
		   const struct svg_chart *ch);

/* The embedded script's part that draws a stretch of time. */
extern const char svg_time_script[];

#endif
