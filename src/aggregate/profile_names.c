/* After a profile is loaded: its processes and threads numbered in start
 * order among those of their name (PROGRAM#N for diffs), and its functions
 * given display names that tell apart two functions of one name (by file,
 * then by module). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "aggregate/profile_int.h"

static const struct profile *ord_p; /* for the comparators below (single-threaded) */

static int proc_order(const void *a, const void *b)
{
	const struct pprocess *x = &ord_p->procs[*(const size_t *)a], *y = &ord_p->procs[*(const size_t *)b];
	if (x->start_ns != y->start_ns)
		return x->start_ns < y->start_ns ? -1 : 1;
	return x->pid < y->pid ? -1 : x->pid > y->pid;
}

static int thread_order(const void *a, const void *b)
{
	const struct pthread *x = &ord_p->threads[*(const size_t *)a], *y = &ord_p->threads[*(const size_t *)b];
	if (x->pid != y->pid)
		return x->pid < y->pid ? -1 : 1;
	return x->tid < y->tid ? -1 : x->tid > y->tid;
}

/* Ordinals by which two runs' processes (and threads) match when their
 * pids differ: the 2nd `worker` started is `worker#2` in both. */
void profile_number_in_order(struct profile *p)
{
	size_t n = p->nprocs > p->nthreads ? p->nprocs : p->nthreads;
	size_t *idx = xmalloc((n ? n : 1) * sizeof(*idx));
	struct intern seen;
	intern__init(&seen);
	uint32_t *count = NULL;
	size_t ccount = 0;
	ord_p = p;
	for (size_t i = 0; i < p->nprocs; i++)
		idx[i] = i;
	sort_array(idx, p->nprocs, sizeof(*idx), proc_order);
	for (size_t i = 0; i < p->nprocs; i++) {
		uint32_t k = intern__str(&seen, profile__process_name(p, p->procs[idx[i]].pid));
		ARR_GROW(count, ccount, (size_t)k + 1);
		p->procs[idx[i]].ord = ++count[k];
	}
	intern__release(&seen);
	intern__init(&seen);
	if (count)
		memset(count, 0, ccount * sizeof(*count));
	for (size_t i = 0; i < p->nthreads; i++)
		idx[i] = i;
	sort_array(idx, p->nthreads, sizeof(*idx), thread_order);
	for (size_t i = 0; i < p->nthreads; i++) {
		const struct pthread *t = &p->threads[idx[i]];
		char key[600];
		snprintf(key, sizeof(key), "%u/%s", t->pid, t->name ? t->name : "");
		uint32_t k = intern__str(&seen, key);
		ARR_GROW(count, ccount, (size_t)k + 1);
		p->threads[idx[i]].ord = ++count[k];
	}
	intern__release(&seen);
	free(count);
	free(idx);
}


/* ---- function identity ----
 * A Python function is (qualified name, file, def line); a native one is
 * (name, module, file): two static functions of one name in two files, or
 * two modules' functions of one name, are two functions. Each frame gets
 * the name it is shown by: its own where no other function has it, else
 * the name with the least that tells them apart: the file's base name,
 * the whole path, then the def line (Python) or the module. */
struct ident {
	uint32_t func, file, module_path, def_line;
	bool python;
	uint32_t name;
};

/* The last k '/'-separated parts of path (all of it when it has fewer). */
static const char *path_suffix(const char *path, int k)
{
	const char *at = path + strlen(path);
	while (at > path) {
		if (at[-1] == '/' && --k == 0)
			return at;
		at--;
	}
	return path;
}

static const char *ident_where(const struct profile *p, const struct ident *d)
{
	const char *file = profile__str(p, d->file);
	return *file ? file : profile__str(p, d->module_path);
}

static int ident_cmp(const void *a, const void *b)
{
	const struct ident *x = a, *y = b;
	return x->func < y->func ? -1 : x->func > y->func;
}

void profile_name_functions(struct profile *p)
{
	struct intern keys;
	intern__init(&keys);
	struct ident *ids = NULL;
	size_t cids = 0;
	uint32_t *of = NULL; /* frame -> ident, in visiting order */
	size_t nof = 0, cof = 0;
	struct buf k;
	buf__init(&k);
	/* a native (name, module): its one source file, or MULTI when it has
	 * two (two static functions); frames without line information join
	 * the one */
	struct intern natives;
	intern__init(&natives);
	uint32_t *nfile = NULL;
	size_t cnfile = 0;
	const uint32_t MULTI = UINT32_MAX;
	for (size_t i = 0; i < p->nlocs; i++) {
		struct ploc *l = &p->locs[i];
		for (size_t j = 0; j < l->nframes; j++) {
			struct pframe *f = &l->frames[j];
			if (f->kind == FK_PYTHON || f->module >= p->nmodules)
				continue;
			uint32_t key[2] = {f->func, intern__str(&p->strings, p->modules[f->module].path)};
			bool added;
			uint32_t id = intern__put(&natives, key, sizeof(key), &added);
			ARR_GROW(nfile, cnfile, id + 1);
			if (added)
				nfile[id] = p->str_empty;
			if (f->file != p->str_empty && nfile[id] != MULTI && f->file != nfile[id])
				nfile[id] = nfile[id] == p->str_empty ? f->file : MULTI;
		}
	}
	for (int pass = 0; pass < 2; pass++) {
		size_t at = 0;
		for (size_t i = 0; i < p->nlocs; i++) {
			struct ploc *l = &p->locs[i];
			for (int part = 0; part < 2; part++) {
				struct pframe *fr = part ? l->tail : l->frames;
				size_t nf = part ? l->ntail : l->nframes;
				for (size_t j = 0; j < nf; j++) {
					struct pframe *f = &fr[j];
					if (pass == 1) {
						f->name = ids[of[at++]].name;
						continue;
					}
					bool py = f->kind == FK_PYTHON;
					uint32_t mod = f->module < p->nmodules ? intern__str(&p->strings, p->modules[f->module].path)
									       : p->str_empty;
					uint32_t file = f->file;
					if (!py && f->module < p->nmodules) {
						uint32_t nk[2] = {f->func, mod};
						uint32_t nid = intern__put(&natives, nk, sizeof(nk), NULL);
						if (nid < cnfile && nfile[nid] != MULTI)
							file = nfile[nid];
					}
					struct ident d = {.func = f->func, .file = file, .module_path = py ? p->str_empty : mod,
							  .def_line = py ? f->def_line : 0, .python = py, .name = f->func};
					uint32_t key[5] = {d.func, d.file, d.module_path, d.def_line, py};
					k.len = 0;
					buf__put(&k, key, sizeof(key));
					bool added;
					uint32_t id = intern__put(&keys, k.data, (uint32_t)k.len, &added);
					if (added) {
						ARR_GROW(ids, cids, id + 1);
						ids[id] = d;
					}
					ARR_GROW(of, cof, nof + 1);
					of[nof++] = id;
				}
			}
		}
		if (pass == 1)
			break;
		/* groups of one name, in a sorted copy (its order is not the ids') */
		size_t n = keys.n;
		struct ident *sorted = xmalloc((n + 1) * sizeof(*sorted));
		uint32_t *back = xmalloc((n + 1) * sizeof(*back));
		for (size_t i = 0; i < n; i++) {
			sorted[i] = ids[i];
			sorted[i].name = (uint32_t)i; /* carries the id through the sort */
		}
		sort_array(sorted, n, sizeof(*sorted), ident_cmp);
		for (size_t i = 0; i < n; i++)
			back[i] = sorted[i].name;
		for (size_t g = 0; g < n;) {
			size_t e = g + 1;
			while (e < n && sorted[e].func == sorted[g].func)
				e++;
			for (size_t i = g; e - g > 1 && i < e; i++) {
				/* the fewest trailing parts of its path no other function
				 * of this name shares; the same file: its def line or module */
				struct ident *d = &ids[back[i]];
				const char *where = ident_where(p, d), *lab = where;
				bool same_file = false;
				for (int parts = 1;; parts++) {
					const char *suf = path_suffix(where, parts);
					bool clash = false;
					for (size_t j = g; j < e && !clash; j++) {
						if (j == i)
							continue;
						const char *ow = ident_where(p, &ids[back[j]]);
						const char *osuf = path_suffix(ow, parts);
						clash = !strcmp(suf, osuf);
						same_file |= clash && !strcmp(where, ow);
					}
					lab = suf;
					if (!clash || suf == where || same_file)
						break;
				}
				char full[1600];
				if (same_file && d->python)
					snprintf(full, sizeof(full), "%s (%s:%u)", profile__str(p, d->func), lab, d->def_line);
				else if (same_file)
					snprintf(full, sizeof(full), "%s (%s in %s)", profile__str(p, d->func), lab,
						 path_base(profile__str(p, d->module_path)));
				else
					snprintf(full, sizeof(full), "%s (%s)", profile__str(p, d->func), lab);
				d->name = intern__str(&p->strings, full);
			}
			g = e;
		}
		free(sorted);
		free(back);
	}
	free(of);
	free(ids);
	free(nfile);
	intern__release(&natives);
	buf__release(&k);
	intern__release(&keys);
}
