/* Exporters for other tools: speedscope's JSON file format, kiln's own JSON
 * (everything aggregated, for scripts), and pprof's gzipped profile.proto
 * (go tool pprof, Pyroscope, Parca, Grafana). */
#include <inttypes.h>
#include <jansson.h>
#include <string.h>
#include <zlib.h>
#include "export/export.h"
#include "stream/format.h"

/* ---- speedscope ---- */

/* One sample of profile pr: the stack s (taken over), its weight. */
static void speedscope_sample(json_t *pr, json_t *s, int64_t weight)
{
	json_array_append_new(json_object_get(pr, "samples"), s);
	json_array_append_new(json_object_get(pr, "weights"), json_integer(weight));
	json_t *ev = json_object_get(pr, "endValue");
	json_integer_set(ev, sat_add(json_integer_value(ev), weight));
}

/* Samples in time order (the windows): each cell's stack and profile. */
struct timed_samples {
	json_t *profiles;
	json_t **cell_s; /* NULL: no samples of this cell */
	const uint32_t *cell_pi;
};

static void timed_sample(void *arg, uint32_t cell, double end, int64_t delta)
{
	(void)end;
	const struct timed_samples *ts = arg;
	if (ts->cell_s[cell] && delta > 0)
		speedscope_sample(json_array_get(ts->profiles, ts->cell_pi[cell]), json_incref(ts->cell_s[cell]), delta);
}

int export__speedscope(FILE *f, const struct profile *p, const struct view_filter *vf)
{
	json_t *root = json_object();
	json_object_set_new(root, "$schema", json_string("https://www.speedscope.app/file-format-schema.json"));
	json_t *frames = json_array();
	struct intern fkeys;
	intern__init(&fkeys);
	struct intern profkeys; /* pid,tid -> profile index */
	intern__init(&profkeys);
	json_t *profiles = json_array();
	bool bytes = kiln_metric__is_bytes(vf->metric);
	const struct pframe *fr[PROFILE_MAX_FRAMES];
	/* in time order where the windows say when (speedscope's "Time Order"
	 * view then is a timeline): each window's count of a stack one sample */
	bool timed = profile__windows_whole(p, vf->metric);
	json_t **cell_s = timed ? xcalloc(p->ncells + 1, sizeof(*cell_s)) : NULL;
	uint32_t *cell_pi = timed ? xcalloc(p->ncells + 1, sizeof(*cell_pi)) : NULL;
	for (size_t ci = 0; ci < p->ncells; ci++) {
		const struct pcell *c = &p->cells[ci];
		if (!view__cell_selected(c, vf) || c->v[vf->metric] < 0)
			continue;
		uint32_t pk[2] = {c->pid, c->tid};
		bool added;
		uint32_t pi = intern__put(&profkeys, pk, sizeof(pk), &added);
		if (added) {
			json_t *pr = json_object();
			const struct pthread *th = profile__thread(p, c->pid, c->tid);
			char name[400];
			snprintf(name, sizeof(name), "%s-%u / %s-%u", profile__process_name(p, c->pid), c->pid,
				 th && th->name && *th->name ? th->name : "thread", c->tid);
			json_object_set_new(pr, "type", json_string("sampled"));
			json_object_set_new(pr, "name", json_string(name));
			json_object_set_new(pr, "unit", json_string(bytes ? "bytes" : "none"));
			json_object_set_new(pr, "startValue", json_integer(0));
			json_object_set_new(pr, "endValue", json_integer(0));
			json_object_set_new(pr, "samples", json_array());
			json_object_set_new(pr, "weights", json_array());
			json_array_append_new(profiles, pr);
		}
		json_t *pr = json_array_get(profiles, pi);
		size_t n = profile__stack_frames(p, c->stack, fr, PROFILE_MAX_FRAMES);
		json_t *s = json_array();
		for (size_t i = 0; i < n; i++) {
			uint32_t key[3] = {fr[i]->name, fr[i]->file, fr[i]->line};
			uint32_t fi = intern__put(&fkeys, key, sizeof(key), &added);
			if (added) {
				json_t *fo = json_object();
				json_object_set_new(fo, "name", json_string(profile__str(p, fr[i]->name)));
				if (*profile__str(p, fr[i]->file)) {
					json_object_set_new(fo, "file", json_string(profile__str(p, fr[i]->file)));
					json_object_set_new(fo, "line", json_integer(fr[i]->line));
				}
				json_array_append_new(frames, fo);
			}
			json_array_append_new(s, json_integer(fi));
		}
		if (timed) {
			cell_s[ci] = s;
			cell_pi[ci] = pi;
			continue;
		}
		speedscope_sample(pr, s, c->v[vf->metric]);
	}
	if (timed) {
		struct timed_samples ts = {profiles, cell_s, cell_pi};
		profile__window_each(p, vf->metric, timed_sample, &ts);
		for (size_t ci = 0; ci < p->ncells; ci++)
			json_decref(cell_s[ci]);
	}
	free(cell_s);
	free(cell_pi);
	json_t *shared = json_object();
	json_object_set_new(shared, "frames", frames);
	json_object_set_new(root, "shared", shared);
	json_object_set_new(root, "profiles", profiles);
	char name[700], est[80];
	snprintf(name, sizeof(name), "%s%s: %s", kiln_metric__name(vf->metric),
		 export__estimated(p, vf->metric, est, sizeof(est)), *p->program ? p->program : p->path);
	json_object_set_new(root, "name", json_string(name));
	json_object_set_new(root, "activeProfileIndex", json_integer(0));
	json_object_set_new(root, "exporter", json_string("kiln " KILN_VERSION));
	int rc = json_dumpf(root, f, JSON_COMPACT);
	fputc('\n', f);
	json_decref(root);
	intern__release(&fkeys);
	intern__release(&profkeys);
	return rc;
}

/* ---- kiln JSON ---- */

static json_t *json_frames(const struct profile *p, const struct pframe *frs, uint16_t n)
{
	json_t *a = json_array();
	for (uint16_t k = 0; k < n; k++) {
		json_t *fo = json_object();
		json_object_set_new(fo, "function", json_string(profile__str(p, frs[k].func)));
		json_object_set_new(fo, "file", json_string(profile__str(p, frs[k].file)));
		json_object_set_new(fo, "line", json_integer(frs[k].line));
		json_object_set_new(fo, "inlined", json_boolean(frs[k].inlined == 1));
		json_array_append_new(a, fo);
	}
	return a;
}

int export__json(FILE *f, const struct profile *p)
{
	json_t *root = json_object();
	json_object_set_new(root, "format", json_string("kiln-json"));
	json_object_set_new(root, "version", json_integer(1));
	json_object_set_new(root, "meta", json_incref(p->meta ? p->meta : json_object()));
	json_object_set_new(root, "complete", json_boolean(p->complete));
	/* heap figures are estimates when not 0 (record --heap-sample) */
	json_object_set_new(root, "heap_sample", json_integer((json_int_t)p->heap_sample));
	json_object_set_new(root, "samples", json_integer((json_int_t)p->samples));
	json_object_set_new(root, "lost", json_integer((json_int_t)p->lost));
	json_object_set_new(root, "duration_s", json_real(profile__duration(p)));
	json_t *metrics = json_array();
	for (int m = 0; m < KM__COUNT; m++)
		if (p->has[m])
			json_array_append_new(metrics, json_string(kiln_metric__name(m)));
	json_object_set_new(root, "metrics", metrics);
	json_t *mods = json_array();
	for (size_t i = 0; i < p->nmodules; i++) {
		json_t *m = json_object();
		json_object_set_new(m, "path", json_string(p->modules[i].path));
		json_object_set_new(m, "build_id", json_string(p->modules[i].build_id));
		json_array_append_new(mods, m);
	}
	json_object_set_new(root, "modules", mods);
	json_t *locs = json_array();
	for (size_t i = 0; i < p->nlocs; i++) {
		const struct ploc *l = &p->locs[i];
		json_t *lo = json_object();
		json_object_set_new(lo, "module", l->module == UINT32_MAX ? json_null() : json_integer(l->module));
		json_object_set_new(lo, "address", json_integer((json_int_t)l->addr));
		json_object_set_new(lo, "frames", json_frames(p, l->frames, l->nframes));
		json_object_set_new(lo, "tail_calls", json_frames(p, l->tail, l->ntail));
		json_array_append_new(locs, lo);
	}
	json_object_set_new(root, "locations", locs);
	json_t *stacks = json_array();
	const struct pframe *fr[PROFILE_MAX_FRAMES];
	for (size_t i = 0; i < p->nstacks; i++) {
		json_t *so = json_object();
		json_t *ids = json_array();
		for (uint16_t k = 0; k < p->stacks[i].depth; k++)
			json_array_append_new(ids, json_integer(p->stacks[i].locs[k]));
		json_object_set_new(so, "locations", ids);
		json_object_set_new(so, "truncated", json_boolean(p->stacks[i].flags & STACK_TRUNCATED));
		/* the frames every other output shows, root first */
		json_t *names = json_array();
		size_t n = profile__stack_frames(p, (uint32_t)i, fr, PROFILE_MAX_FRAMES);
		for (size_t k = 0; k < n; k++)
			json_array_append_new(names, json_string(profile__str(p, fr[k]->name)));
		json_object_set_new(so, "frames", names);
		json_array_append_new(stacks, so);
	}
	json_object_set_new(root, "stacks", stacks);
	json_t *procs = json_array();
	for (size_t i = 0; i < p->nprocs; i++) {
		json_t *po = json_object();
		json_object_set_new(po, "pid", json_integer(p->procs[i].pid));
		json_object_set_new(po, "ppid", json_integer(p->procs[i].ppid));
		json_object_set_new(po, "name", json_string(p->procs[i].name ? p->procs[i].name : ""));
		json_object_set_new(po, "exe", json_string(p->procs[i].exe ? p->procs[i].exe : ""));
		json_object_set_new(po, "exit_status", p->procs[i].exited ? json_integer(p->procs[i].status) : json_null());
		json_array_append_new(procs, po);
	}
	json_object_set_new(root, "processes", procs);
	json_t *threads = json_array();
	for (size_t i = 0; i < p->nthreads; i++) {
		json_t *to = json_object();
		json_object_set_new(to, "pid", json_integer(p->threads[i].pid));
		json_object_set_new(to, "tid", json_integer(p->threads[i].tid));
		json_object_set_new(to, "name", json_string(p->threads[i].name ? p->threads[i].name : ""));
		json_array_append_new(threads, to);
	}
	json_object_set_new(root, "threads", threads);
	json_t *cells = json_array();
	for (size_t i = 0; i < p->ncells; i++) {
		const struct pcell *c = &p->cells[i];
		json_t *co = json_object();
		json_object_set_new(co, "pid", json_integer(c->pid));
		json_object_set_new(co, "tid", json_integer(c->tid));
		const struct pthread *t = profile__thread(p, c->pid, c->tid);
		json_object_set_new(co, "name", json_string(t && t->name ? t->name : "")); /* the thread's */
		json_object_set_new(co, "stack", json_integer(c->stack));
		for (int m = 0; m < KM__COUNT; m++)
			if (c->v[m])
				json_object_set_new(co, kiln_metric__name(m), json_integer(c->v[m]));
		json_array_append_new(cells, co);
	}
	json_object_set_new(root, "cells", cells);
	int rc = json_dumpf(root, f, JSON_COMPACT);
	fputc('\n', f);
	json_decref(root);
	return rc;
}

/* ---- pprof (profile.proto, gzipped) ---- */

static void pb_varint(struct buf *b, uint64_t v)
{
	while (v >= 0x80) {
		buf__u8(b, (uint8_t)(v | 0x80));
		v >>= 7;
	}
	buf__u8(b, (uint8_t)v);
}

static void pb_key(struct buf *b, int field, int wire)
{
	pb_varint(b, ((uint64_t)field << 3) | (uint64_t)wire);
}

static void pb_int(struct buf *b, int field, uint64_t v)
{
	if (!v)
		return;
	pb_key(b, field, 0);
	pb_varint(b, v);
}

static void pb_bytes(struct buf *b, int field, const void *p, size_t n)
{
	pb_key(b, field, 2);
	pb_varint(b, n);
	buf__put(b, p, n);
}

static void pb_msg(struct buf *b, int field, struct buf *m)
{
	pb_bytes(b, field, m->data, m->len);
	m->len = 0;
}

struct pstrings {
	struct intern t;
};

static uint64_t pstr(struct pstrings *s, const char *str)
{
	return intern__str(&s->t, str);
}

int export__pprof(FILE *f, const struct profile *p, const struct view_filter *vf)
{
	struct buf out, m, sub;
	buf__init(&out);
	buf__init(&m);
	buf__init(&sub);
	struct pstrings S;
	intern__init(&S.t);
	pstr(&S, "");
	int metrics[KM__COUNT], nm = 0, def = 0;
	for (int k = 0; k < KM__COUNT; k++)
		if (p->has[k] || k == vf->metric) {
			if (k == vf->metric)
				def = nm;
			metrics[nm++] = k;
		}
	for (int i = 0; i < nm; i++) {
		pb_int(&m, 1, pstr(&S, kiln_metric__name(metrics[i])));
		pb_int(&m, 2, pstr(&S, kiln_metric__is_bytes(metrics[i]) ? "bytes" : "count"));
		pb_msg(&out, 1, &m);
	}
	/* samples: one location per distinct frame (function, file, line,
	 * module), leaf first, from profile__stack_frames, the one function
	 * every exporter turns a stack into frames with (inlined and tail-call
	 * frames included, a truncated stack's marker at its root). */
	struct intern frames;
	intern__init(&frames);
	struct buf locmsgs;
	buf__init(&locmsgs);
	struct intern fn;
	intern__init(&fn);
	struct buf fnmsgs;
	buf__init(&fnmsgs);
	const struct pframe *fr[PROFILE_MAX_FRAMES];
	for (size_t ci = 0; ci < p->ncells; ci++) {
		const struct pcell *c = &p->cells[ci];
		if ((vf->pid >= 0 && c->pid != (uint64_t)vf->pid) || (vf->tid >= 0 && c->tid != (uint64_t)vf->tid))
			continue;
		bool any = false;
		for (int i = 0; i < nm; i++)
			any |= c->v[metrics[i]] != 0;
		if (!any)
			continue;
		size_t n = profile__stack_frames(p, c->stack, fr, PROFILE_MAX_FRAMES);
		sub.len = 0;
		for (size_t k = n; k-- > 0;) {
			uint32_t key[4] = {fr[k]->name, fr[k]->file, fr[k]->line, fr[k]->module};
			bool added;
			uint32_t lid = intern__put(&frames, key, sizeof(key), &added) + 1;
			if (added) {
				uint32_t fkey[2] = {fr[k]->name, fr[k]->file};
				bool fadded;
				uint32_t fid = intern__put(&fn, fkey, sizeof(fkey), &fadded) + 1;
				struct buf msg, line;
				buf__init(&msg);
				buf__init(&line);
				if (fadded) {
					pb_int(&msg, 1, fid);
					pb_int(&msg, 2, pstr(&S, profile__str(p, fr[k]->name)));
					pb_int(&msg, 3, pstr(&S, profile__str(p, fr[k]->func)));
					pb_int(&msg, 4, pstr(&S, profile__str(p, fr[k]->file)));
					pb_bytes(&fnmsgs, 5, msg.data, msg.len);
					msg.len = 0;
				}
				pb_int(&msg, 1, lid);
				if (fr[k]->module < p->nmodules)
					pb_int(&msg, 2, (uint64_t)fr[k]->module + 1);
				pb_int(&line, 1, fid);
				pb_int(&line, 2, fr[k]->line);
				pb_msg(&msg, 4, &line);
				pb_bytes(&locmsgs, 4, msg.data, msg.len);
				buf__release(&msg);
				buf__release(&line);
			}
			pb_varint(&sub, lid);
		}
		pb_bytes(&m, 1, sub.data, sub.len);
		sub.len = 0;
		for (int i = 0; i < nm; i++)
			pb_varint(&sub, (uint64_t)c->v[metrics[i]]);
		pb_bytes(&m, 2, sub.data, sub.len);
		sub.len = 0;
		/* labels: pid, tid */
		struct buf lab;
		buf__init(&lab);
		pb_int(&lab, 1, pstr(&S, "pid"));
		pb_int(&lab, 3, c->pid);
		pb_msg(&m, 3, &lab);
		pb_int(&lab, 1, pstr(&S, "tid"));
		pb_int(&lab, 3, c->tid);
		pb_msg(&m, 3, &lab);
		buf__release(&lab);
		pb_msg(&out, 2, &m);
	}
	for (size_t i = 0; i < p->nmodules; i++) {
		pb_int(&m, 1, i + 1);
		pb_int(&m, 5, pstr(&S, p->modules[i].path));
		pb_int(&m, 6, pstr(&S, p->modules[i].build_id));
		pb_int(&m, 7, 1); /* has_functions */
		pb_int(&m, 8, 1); /* has_filenames */
		pb_int(&m, 9, 1); /* has_line_numbers */
		pb_int(&m, 10, 1); /* has_inline_frames */
		pb_msg(&out, 3, &m);
	}
	buf__put(&out, locmsgs.data, locmsgs.len);
	buf__release(&locmsgs);
	intern__release(&frames);

	buf__put(&out, fnmsgs.data, fnmsgs.len);
	pb_int(&out, 9, p->start_ns);
	double d = profile__duration(p);
	pb_int(&out, 10, d * 1e9 < 1.8e19 ? (uint64_t)(d * 1e9) : UINT64_MAX);
	json_t *freq = json_object_get(p->meta, "frequency");
	if (p->has[KM_CPU] && json_is_integer(freq) && json_integer_value(freq) > 0) {
		pb_int(&m, 1, pstr(&S, "cpu"));
		pb_int(&m, 2, pstr(&S, "nanoseconds"));
		pb_msg(&out, 11, &m);
		pb_int(&out, 12, (uint64_t)(1e9 / (double)json_integer_value(freq)));
	}
	pb_int(&out, 14, pstr(&S, kiln_metric__name(metrics[def])));
	if (p->heap_sample) { /* comment: shown by pprof -comments and in its UI */
		char est[80];
		pb_int(&out, 13, pstr(&S, export__estimated(p, KM_ALLOC_BYTES, est, sizeof(est)) + 1));
	}
	/* the string table last: every string is interned by now */
	for (size_t i = 0; i < S.t.n; i++) {
		uint32_t len;
		const void *s = intern__key(&S.t, (uint32_t)i, &len);
		pb_bytes(&out, 6, s, len);
	}
	/* gzip */
	z_stream z;
	memset(&z, 0, sizeof(z));
	int rc = -1;
	if (deflateInit2(&z, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) == Z_OK) {
		unsigned char chunk[65536];
		z.next_in = out.data;
		z.avail_in = (uInt)out.len;
		int zr;
		do {
			z.next_out = chunk;
			z.avail_out = sizeof(chunk);
			zr = deflate(&z, Z_FINISH);
			fwrite(chunk, 1, sizeof(chunk) - z.avail_out, f);
		} while (zr == Z_OK);
		rc = zr == Z_STREAM_END ? 0 : -1;
		deflateEnd(&z);
	}
	buf__release(&out);
	buf__release(&m);
	buf__release(&sub);
	buf__release(&fnmsgs);
	intern__release(&fn);
	intern__release(&S.t);
	return rc;
}
