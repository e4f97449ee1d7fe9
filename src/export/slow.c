/* asyncio loop blocking, as asyncio's debug mode logs it ("Executing <Task
 * ...> took 0.800 seconds") but from the samples of a --wall recording: the
 * stretches in which the samples saw one callback (a Handle) running
 * throughout (collect/pyasync.h, REC_SLOW). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include "export/export.h"

static int by_duration(const void *a, const void *b)
{
	const struct pslow *x = *(const struct pslow *const *)a, *y = *(const struct pslow *const *)b;
	return x->dur_ns < y->dur_ns ? 1 : x->dur_ns > y->dur_ns ? -1 : (x->start_ns > y->start_ns) - (x->start_ns < y->start_ns);
}

/* The stretches shown, longest first (malloc'd; *n of them). */
static const struct pslow **chosen(const struct profile *p, const struct view_filter *vf, uint64_t min_ns, size_t *n)
{
	const struct pslow **v = xmalloc((p->nslows + 1) * sizeof(*v));
	*n = 0;
	for (size_t i = 0; i < p->nslows; i++) {
		const struct pslow *s = &p->slows[i];
		if (s->dur_ns < min_ns || (vf->pid >= 0 && s->pid != (uint32_t)vf->pid) ||
		    (vf->tid >= 0 && s->tid != (uint32_t)vf->tid))
			continue;
		if (p->ranged) { /* --time: the stretches that overlap it */
			double a = profile__seconds(p, s->start_ns);
			if (a > p->range_to || a + (double)s->dur_ns / 1e9 < p->range_from)
				continue;
		}
		v[(*n)++] = s;
	}
	qsort(v, *n, sizeof(*v), by_duration);
	return v;
}

/* The innermost Python frames of a stack (at most 3), outer first. */
static void where(const struct profile *p, uint32_t stack, struct buf *out)
{
	const struct pframe *fr[PROFILE_MAX_FRAMES];
	size_t n = profile__stack_frames(p, stack, fr, PROFILE_MAX_FRAMES);
	size_t idx[3], k = 0;
	for (size_t i = n; i-- > 0 && k < 3;)
		if (fr[i]->kind == FK_PYTHON && strncmp(profile__str(p, fr[i]->func), "Task ", 5))
			idx[k++] = i;
	for (size_t j = k; j-- > 0;) {
		const struct pframe *f = fr[idx[j]];
		const char *file = profile__str(p, f->file), *base = strrchr(file, '/');
		buf__printf(out, "%s%s (%s:%u)", j + 1 < k ? " > " : "", profile__str(p, f->func), base ? base + 1 : file,
			    f->line);
	}
	if (!k)
		buf__printf(out, "(no Python frames)");
}

void export__slow_text(FILE *f, const struct profile *p, const struct view_filter *vf, uint64_t min_ns)
{
	size_t n;
	const struct pslow **v = chosen(p, vf, min_ns, &n);
	fprintf(f, "# event loop held by one callback for %.0f ms or more: %zu time%s", (double)min_ns / 1e6, n,
		n == 1 ? "" : "s");
	if (!p->nslows)
		fprintf(f, " (none recorded: stretches are measured from the samples of `kiln record --wall` of a "
			   "CPython 3.11-3.13 event loop)");
	fputc('\n', f);
	if (!n) {
		free(v);
		return;
	}
	fprintf(f, "\n%10s %9s  %-18s %-24s %s\n", "held", "at", "thread", "task", "where");
	struct buf w;
	buf__init(&w);
	for (size_t i = 0; i < n; i++) {
		const struct pslow *s = v[i];
		const struct pthread *th = profile__thread(p, s->pid, s->tid);
		char tn[96];
		snprintf(tn, sizeof(tn), "%s-%u", th && th->name && *th->name ? th->name : "thread", s->tid);
		double at = profile__seconds(p, s->start_ns);
		const char *task = profile__str(p, s->task);
		w.len = 0;
		where(p, s->stack, &w);
		fprintf(f, "%8.3f s %7.3f s  %-18s %-24s %s\n", (double)s->dur_ns / 1e9, at, tn,
			*task ? task : "(a callback, no task)", buf__cstr(&w));
	}
	buf__release(&w);
	free(v);
}

void export__slow_json(FILE *f, const struct profile *p, const struct view_filter *vf, uint64_t min_ns)
{
	size_t n;
	const struct pslow **v = chosen(p, vf, min_ns, &n);
	json_t *a = json_array();
	struct buf w;
	buf__init(&w);
	for (size_t i = 0; i < n; i++) {
		const struct pslow *s = v[i];
		w.len = 0;
		where(p, s->stack, &w);
		json_array_append_new(a, json_pack("{s:I, s:I, s:f, s:f, s:s, s:s}", "pid", (json_int_t)s->pid, "tid",
						   (json_int_t)s->tid, "seconds", (double)s->dur_ns / 1e9, "at",
						   profile__seconds(p, s->start_ns),
						   "task", profile__str(p, s->task), "where", buf__cstr(&w)));
	}
	json_t *o = json_pack("{s:f, s:o}", "min_seconds", (double)min_ns / 1e9, "stretches", a);
	json_dumpf(o, f, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	fputc('\n', f);
	json_decref(o);
	buf__release(&w);
	free(v);
}
