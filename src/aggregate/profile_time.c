/* A stretch of the recording from its time windows (profile.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "aggregate/profile.h"

bool profile__time_metric(int m)
{
	return m == KM_CPU || m == KM_WALL || m == KM_ALLOC_BYTES || m == KM_ALLOC_COUNT || m == KM_LIVE_BYTES ||
	       m == KM_LIVE_COUNT;
}

double profile__window_end(const struct profile *p, size_t i)
{
	return profile__seconds(p, p->wins[i].t_ns);
}

int profile__time_range(struct profile *p, double *from, double *to, char *err, size_t errlen)
{
	if (!p->nwins) {
		snprintf(err, errlen, "it holds no time windows (a snapshot, or recorded by an older kiln)");
		return -1;
	}
	/* the edges: the start (0), then each window's end */
	size_t a = 0, b = p->nwins; /* windows [a, b) are in the range: a's start edge <= from */
	for (size_t i = 0; i < p->nwins; i++)
		if (profile__window_end(p, i) <= *from)
			a = i + 1;
	for (size_t i = p->nwins; i-- > a;)
		if (profile__window_end(p, i) >= *to)
			b = i + 1;
	if (b <= a) /* a range inside one window, or past the last: that window */
		b = a < p->nwins ? a + 1 : (a = p->nwins - 1) + 1;
	*from = a ? profile__window_end(p, a - 1) : 0;
	*to = profile__window_end(p, b - 1);
	p->ranged = true;
	p->range_from = *from;
	p->range_to = *to;
	for (size_t i = 0; i < p->ncells; i++)
		memset(p->cells[i].v, 0, sizeof(p->cells[i].v));
	for (size_t w = 0; w < b; w++)
		for (size_t k = p->wins[w].first; k < p->wins[w].first + p->wins[w].n; k++) {
			const struct pwent *e = &p->wents[k];
			bool live = e->metric == KM_LIVE_BYTES || e->metric == KM_LIVE_COUNT;
			if (live || w >= a)
				SAT_ADD(p->cells[e->cell].v[e->metric], e->delta);
		}
	memset(p->has, 0, sizeof(p->has));
	for (size_t i = 0; i < p->ncells; i++)
		for (int m = 0; m < KM__COUNT; m++) {
			if (p->cells[i].v[m] < 0) /* only a forged file gets here: no metric is negative */
				p->cells[i].v[m] = 0;
			if (p->cells[i].v[m])
				p->has[m] = true;
		}
	return 0;
}

/* Window i lies in the stretch shown (every window when none is). */
static bool in_range(const struct profile *p, size_t i)
{
	double end = profile__window_end(p, i);
	return !p->ranged || (end > p->range_from && end <= p->range_to + 1e-9);
}

void profile__window_each(const struct profile *p, int m, profile_window_fn fn, void *arg)
{
	for (size_t w = 0; w < p->nwins; w++) {
		if (!in_range(p, w))
			continue;
		double end = profile__window_end(p, w);
		for (size_t k = p->wins[w].first; k < p->wins[w].first + p->wins[w].n; k++)
			if (p->wents[k].metric == m)
				fn(arg, p->wents[k].cell, end, p->wents[k].delta);
	}
}

static void add_to_sum(void *arg, uint32_t cell, double end, int64_t delta)
{
	(void)end;
	SAT_ADD(((int64_t *)arg)[cell], delta);
}

bool profile__windows_whole(const struct profile *p, int m)
{
	if (!p->nwins || !(m == KM_CPU || m == KM_WALL || m == KM_ALLOC_BYTES || m == KM_ALLOC_COUNT))
		return false;
	int64_t *sum = xcalloc(p->ncells + 1, sizeof(*sum));
	profile__window_each(p, m, add_to_sum, sum);
	bool whole = true;
	for (size_t i = 0; i < p->ncells && whole; i++)
		whole = sum[i] == p->cells[i].v[m];
	free(sum);
	return whole;
}
