/* Memory over time: the timeline as CSV (seconds,pid,heap_live_bytes,
 * rss_bytes) and the one-line sparkline of the report's header. The numbers
 * are the recorder's points (collect/timeline.h): a point's heap is the most
 * live since the point before, so the column's maximum is the peak. */
#include <inttypes.h>
#include <string.h>
#include "export/export.h"
#include "stream/format.h"

bool export__timeline_several(const struct profile *p)
{
	uint32_t first = 0;
	for (size_t i = 0; i < p->npoints; i++) {
		uint32_t pid = p->points[i].pid;
		if (!pid)
			continue;
		if (first && pid != first)
			return true;
		first = pid;
	}
	return false;
}

bool export__timeline_curve(const struct ppoint *pt, int64_t pid, bool multi)
{
	if (pid >= 0)
		return pt->pid == (uint64_t)pid;
	return multi ? pt->pid == 0 : pt->pid != 0;
}

static bool point_shown(const struct ppoint *pt, const struct view_filter *vf, bool multi)
{
	if (vf->pid >= 0)
		return pt->pid == (uint32_t)vf->pid;
	return pt->pid ? true : multi;
}

int export__timeline_csv(FILE *f, const struct profile *p, const struct view_filter *vf)
{
	bool multi = export__timeline_several(p);
	fputs("seconds,pid,heap_live_bytes,rss_bytes\n", f);
	for (size_t i = 0; i < p->npoints; i++) {
		const struct ppoint *pt = &p->points[i];
		if (!point_shown(pt, vf, multi))
			continue;
		double s = profile__seconds(p, pt->t_ns);
		if (p->ranged && (s < p->range_from || s > p->range_to))
			continue; /* --time: the points of the stretch */
		fprintf(f, "%.6f,%u,", s, pt->pid);
		if (pt->heap != TIMELINE_NO_HEAP)
			fprintf(f, "%" PRId64, pt->heap);
		fputc(',', f);
		if (pt->rss != TIMELINE_NO_RSS)
			fprintf(f, "%" PRIu64, pt->rss);
		fputc('\n', f);
	}
	return ferror(f) ? -1 : 0;
}

/* The heap of the whole recording over time in `width` cells of
 * ▁▂▃▄▅▆▇█ (each cell the most live in its stretch of time); 0 when the
 * profile has no heap timeline. */
int export__sparkline(const struct profile *p, int width, char *out, size_t outlen, int64_t *max_out)
{
	static const char *const bars[] = {"▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};
	bool multi = export__timeline_several(p);
	uint64_t t0 = UINT64_MAX, t1 = 0;
	int64_t max = 0;
	for (size_t i = 0; i < p->npoints; i++) {
		const struct ppoint *pt = &p->points[i];
		if (pt->heap == TIMELINE_NO_HEAP || !export__timeline_curve(pt, -1, multi))
			continue;
		t0 = pt->t_ns < t0 ? pt->t_ns : t0;
		t1 = pt->t_ns > t1 ? pt->t_ns : t1;
		max = pt->heap > max ? pt->heap : max;
	}
	if (t0 == UINT64_MAX || width <= 0 || width > 200 || outlen < (size_t)width * 3 + 1)
		return 0;
	int64_t cell[200];
	for (int i = 0; i < width; i++)
		cell[i] = -1;
	for (size_t i = 0; i < p->npoints; i++) {
		const struct ppoint *pt = &p->points[i];
		if (pt->heap == TIMELINE_NO_HEAP || !export__timeline_curve(pt, -1, multi))
			continue;
		int k = t1 > t0 ? (int)((double)(pt->t_ns - t0) / (double)(t1 - t0) * (width - 1) + 0.5) : 0;
		if (pt->heap > cell[k])
			cell[k] = pt->heap;
	}
	size_t o = 0;
	int64_t last = 0;
	for (int i = 0; i < width; i++) {
		int64_t v = cell[i] >= 0 ? cell[i] : last; /* no point in this stretch: as before */
		last = v;
		int b = max > 0 ? (int)((double)v / (double)max * 7 + 0.5) : 0;
		memcpy(out + o, bars[b], 3);
		o += 3;
	}
	out[o] = 0;
	*max_out = max;
	return width;
}
