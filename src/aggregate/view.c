/* Tables, folded stacks and diffs over a loaded profile (see view.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "aggregate/view.h"

static const char *const by_names[] = {"function", "line", "file", "lib", "stack", "process", "task", "state"};

int by__parse(const char *s)
{
	for (size_t i = 0; i < ARRAY_SIZE(by_names); i++)
		if (!strcmp(s, by_names[i]))
			return (int)i;
	return -1;
}

const char *by__name(int by)
{
	return by >= 0 && by < (int)ARRAY_SIZE(by_names) ? by_names[by] : "?";
}

bool view__cell_selected(const struct pcell *c, const struct view_filter *f)
{
	if (!c->v[f->metric])
		return false;
	if (f->pid >= 0 && c->pid != (uint64_t)f->pid)
		return false;
	if (f->tid >= 0 && c->tid != (uint64_t)f->tid)
		return false;
	return true;
}

bool view__multi_process(const struct profile *p)
{
	for (size_t i = 1; i < p->ncells; i++)
		if (p->cells[i].pid != p->cells[0].pid)
			return true;
	return false;
}

static const char *module_name(const struct profile *p, uint32_t m)
{
	return m < p->nmodules ? path_base(p->modules[m].path) : "[unknown]";
}

void view__frame_key(const struct profile *p, const struct pframe *f, int by, struct buf *out)
{
	const char *file = profile__str(p, f->file);
	switch (by) {
	case BY_LINE:
		if (*file)
			buf__printf(out, "%s (%s:%u)", profile__str(p, f->name), file, f->line);
		else
			buf__printf(out, "%s (%s)", profile__str(p, f->name), module_name(p, f->module));
		break;
	case BY_FILE: {
		const char *s = *file ? file : module_name(p, f->module);
		buf__put(out, s, strlen(s));
		break;
	}
	case BY_LIB: {
		const char *s = module_name(p, f->module);
		buf__put(out, s, strlen(s));
		break;
	}
	default: {
		uint32_t len;
		const char *s = intern__key(&p->strings, f->name, &len);
		buf__put(out, s, len);
		break;
	}
	}
}

static void append_frame_name(struct buf *out, const char *s)
{
	/* ';' separates frames and the last space precedes the value: keep
	 * names free of ';' and newlines so every reader splits them right. */
	size_t n = strlen(s), at = out->len;
	buf__put(out, s, n);
	if (!strpbrk(s, ";\n"))
		return;
	for (size_t i = at; i < at + n; i++)
		if (out->data[i] == ';' || out->data[i] == '\n')
			out->data[i] = ':';
}

void view__folded_line(const struct profile *p, const struct pcell *c, const struct view_filter *f, bool multi,
		       struct buf *out)
{
	char tmp[512];
	bool first = true;
	if (multi) {
		const struct pprocess *pr = profile__process(p, c->pid);
		if (f->by_order)
			snprintf(tmp, sizeof(tmp), "%s#%u", profile__process_name(p, c->pid), pr ? pr->ord : 0);
		else
			snprintf(tmp, sizeof(tmp), "%s-%u", profile__process_name(p, c->pid), c->pid);
		append_frame_name(out, tmp);
		first = false;
	}
	if (f->threads) {
		const struct pthread *t = profile__thread(p, c->pid, c->tid);
		const char *tn = t && t->name && *t->name ? t->name : "thread";
		if (f->by_order)
			snprintf(tmp, sizeof(tmp), "%s#%u", tn, t ? t->ord : 0);
		else
			snprintf(tmp, sizeof(tmp), "%s-%u", tn, c->tid);
		if (!first)
			buf__u8(out, ';');
		append_frame_name(out, tmp);
		first = false;
	}
	const struct pframe *fr[PROFILE_MAX_FRAMES];
	size_t n = profile__stack_frames(p, c->stack, fr, PROFILE_MAX_FRAMES);
	for (size_t i = 0; i < n; i++) {
		if (!first)
			buf__u8(out, ';');
		append_frame_name(out, profile__str(p, fr[i]->name));
		first = false;
	}
	if (first)
		buf__printf(out, "[unknown]");
}

/* Frames every stack of a process or thread starts with: in a table they
 * only repeat 100% above main; --all-frames keeps them. */
static bool startup_frame(const char *name)
{
	static const char *const glue[] = {"_start", "__libc_start_main", "__libc_start_main_impl",
					   "__libc_start_call_main", "start_thread", "__clone", "__clone3",
					   "clone", "clone3", "__GI___clone3", "__GI___clone"};
	for (size_t i = 0; i < ARRAY_SIZE(glue); i++)
		if (!strcmp(name, glue[i]))
			return true;
	return false;
}

static bool name_in(const char *n, const char *const *list)
{
	for (; *list; list++)
		if (!strcmp(n, *list))
			return true;
	return false;
}

static const char *module_base(const struct profile *p, uint32_t module)
{
	return module < p->nmodules ? path_base(p->modules[module].path) : NULL;
}

static bool interpreter_module(const char *base)
{
	return base && path_is_python(base);
}

/* The C library, the loader, the vDSO: what the interpreter and extensions
 * alike call, passed over to find whose call a frame is. */
static bool system_module(const char *base)
{
	static const char *const sys[] = {"libc.so", "libm.so", "libpthread", "ld-linux", "[vdso]", "linux-vdso",
					  "libgcc_s", "[kernel", NULL};
	for (const char *const *q = sys; base && *q; q++)
		if (!strncmp(base, *q, strlen(*q)))
			return true;
	return false;
}

/* A pthread condition-variable or mutex wait the interpreter itself made:
 * on Linux CPython's locks, events and sleeps wait on semaphores or
 * clock_nanosleep (3.13's PyMutex parks on a semaphore too), and only the
 * GIL's hand-over takes a pthread mutex and waits on a condition (take_gil,
 * and drop_gil's forced switch waiting for the next holder), so this names
 * a GIL wait even in a stripped interpreter, whose take_gil is an address. */
static bool interpreter_cond_wait(const struct profile *p, const struct pstack *st)
{
	bool cond = false;
	for (size_t i = 0; i < st->depth; i++) {
		const struct ploc *l = &p->locs[st->locs[i]];
		if (l->nframes && l->frames[0].kind == FK_PYTHON)
			return false;
		const char *base = module_base(p, l->module);
		if (!system_module(base))
			return cond && interpreter_module(base);
		for (size_t k = 0; k < l->nframes; k++)
			cond = cond || strstr(profile__str(p, l->frames[k].func), "pthread_cond_") ||
			       strstr(profile__str(p, l->frames[k].func), "pthread_mutex_lock");
	}
	return false;
}

bool view__waits_for_gil(const struct profile *p, uint32_t stack)
{
	static const char *const gil[] = {"take_gil", "drop_gil", "PyEval_RestoreThread", "PyEval_AcquireThread",
					  "PyEval_AcquireLock", "PyGILState_Ensure", NULL};
	if (stack >= p->nstacks)
		return false;
	/* every frame, native ones too whatever the view shows */
	const struct pstack *st = &p->stacks[stack];
	if (interpreter_cond_wait(p, st))
		return true;
	for (size_t i = 0; i < st->depth; i++) {
		const struct ploc *l = &p->locs[st->locs[i]];
		for (size_t k = 0; k < l->nframes; k++)
			if (name_in(profile__str(p, l->frames[k].func), gil))
				return true;
		for (size_t k = 0; k < l->ntail; k++) /* entered by a tail call: take_gil often is */
			if (name_in(profile__str(p, l->tail[k].func), gil))
				return true;
	}
	return false;
}

const char *view__thread_state(const struct profile *p, uint32_t stack)
{
	static const char *const waits[] = {
		"epoll_wait", "epoll_pwait", "epoll_pwait2", "select", "__select", "pselect", "__pselect", "poll", "__poll",
		"ppoll", "__ppoll", "nanosleep", "__nanosleep", "clock_nanosleep", "__clock_nanosleep",
		"__GI___clock_nanosleep", "__futex_abstimed_wait_common", "__futex_abstimed_wait_common64",
		"__futex_abstimed_wait_cancelable64", "futex_wait", "__lll_lock_wait", "pthread_cond_wait",
		"pthread_cond_timedwait", "___pthread_cond_wait", "___pthread_cond_timedwait", "sem_wait",
		"sem_timedwait", "sem_clockwait", "read", "__libc_read", "__GI___libc_read", "recv", "__libc_recv",
		"recvfrom", "__libc_recvfrom", "recvmsg", "accept", "accept4", "__libc_accept", "wait4", "__wait4",
		"waitpid", "__waitpid", "pause", "__libc_pause", "sigwait", "sigtimedwait", "__sigtimedwait",
		"sigwaitinfo", "msgrcv", "__libc_msgrcv", NULL};
	const struct pframe *fr[PROFILE_MAX_FRAMES];
	size_t n = profile__stack_frames(p, stack, fr, PROFILE_MAX_FRAMES);
	if (!n)
		return "native";
	if (view__waits_for_gil(p, stack))
		return "GIL wait";
	const struct pframe *leaf = fr[n - 1];
	if (name_in(profile__str(p, leaf->func), waits))
		return "idle";
	/* from the innermost frame out, past the C library and the vDSO (what
	 * the interpreter and extensions alike call): the interpreter or
	 * Python code is "Python", another library "native" */
	for (size_t i = n; i-- > 0;) {
		const struct pframe *f = fr[i];
		if (f->kind == FK_PYTHON)
			return "Python";
		const char *base = module_base(p, f->module);
		if (!base)
			continue;
		if (interpreter_module(base))
			return "Python";
		if (!system_module(base))
			return "native";
	}
	return "native";
}

bool view__task_wait(const struct profile *p, uint32_t stack)
{
	if (stack >= p->nstacks || !p->stacks[stack].depth)
		return false;
	const struct pstack *st = &p->stacks[stack];
	const struct ploc *l = &p->locs[st->locs[st->depth - 1]];
	return l->nframes && l->frames[l->nframes - 1].kind == FK_PYTHON &&
	       !strncmp(profile__str(p, l->frames[l->nframes - 1].func), "Task ", 5);
}

/* A cell's row key by task or by state; false: the cell has no row (by
 * state, a task's wait is no state of its thread). */
static bool cell_key(const struct profile *p, const struct pcell *c, int by, struct buf *key)
{
	if (by == BY_STATE) {
		if (view__task_wait(p, c->stack))
			return false;
		const struct pthread *th = profile__thread(p, c->pid, c->tid);
		buf__printf(key, "%s-%u %s", th && th->name && *th->name ? th->name : "thread", c->tid,
			    view__thread_state(p, c->stack));
		return true;
	}
	const struct pframe *fr[PROFILE_MAX_FRAMES];
	size_t n = profile__stack_frames(p, c->stack, fr, PROFILE_MAX_FRAMES);
	for (size_t i = 0; i < n; i++) {
		const char *nm = profile__str(p, fr[i]->func);
		if (fr[i]->kind == FK_PYTHON && !strncmp(nm, "Task ", 5)) {
			buf__printf(key, "%s", nm);
			return true;
		}
	}
	buf__printf(key, "[no task]");
	return true;
}

void table__build(struct table *t, const struct profile *p, const struct view_filter *f, int by)
{
	memset(t, 0, sizeof(*t));
	intern__init(&t->keys);
	t->metric = f->metric;
	t->by = by;
	struct buf key;
	buf__init(&key);
	bool multi = view__multi_process(p);
	uint32_t mark = 0;
	const struct pframe *fr[PROFILE_MAX_FRAMES];
	/* per function name, computed once: is it a start-up frame, and (by
	 * function) which row is it. 0 = not known yet. */
	uint8_t *glue = xcalloc(p->strings.n + 1, 1);
	uint32_t *row_of = by == BY_FUNCTION ? xcalloc(p->strings.n + 1, sizeof(*row_of)) : NULL;
	for (size_t ci = 0; ci < p->ncells; ci++) {
		const struct pcell *c = &p->cells[ci];
		if (!view__cell_selected(c, f))
			continue;
		int64_t v = c->v[f->metric];
		SAT_ADD(t->sum, v);
		t->cells++;
		if (by == BY_STACK || by == BY_PROCESS || by == BY_TASK || by == BY_STATE) {
			key.len = 0;
			if (by == BY_STACK)
				view__folded_line(p, c, f, multi, &key);
			else if (by == BY_PROCESS)
				buf__printf(&key, "%s-%u", profile__process_name(p, c->pid), c->pid);
			else if (!cell_key(p, c, by, &key)) {
				SAT_ADD(t->sum, -v);
				continue;
			}
			uint32_t id = intern__put(&t->keys, key.data, (uint32_t)key.len, NULL);
			ARR_GROW(t->rows, t->crows, id + 1);
			SAT_ADD(t->rows[id].self, v);
			SAT_ADD(t->rows[id].total, v);
			continue;
		}
		size_t n = profile__stack_frames(p, c->stack, fr, PROFILE_MAX_FRAMES);
		mark++;
		for (size_t i = 0; i < n; i++) {
			uint32_t fn = fr[i]->func;
			if (!f->all_frames && i + 1 < n && fr[i]->module < p->nmodules) {
				if (!glue[fn])
					glue[fn] = startup_frame(profile__str(p, fn)) ? 2 : 1;
				if (glue[fn] == 2)
					continue;
			}
			uint32_t id, nm = fr[i]->name;
			if (row_of && row_of[nm]) {
				id = row_of[nm] - 1;
			} else {
				key.len = 0;
				view__frame_key(p, fr[i], by, &key);
				id = intern__put(&t->keys, key.data, (uint32_t)key.len, NULL);
				if (row_of)
					row_of[nm] = id + 1;
			}
			ARR_GROW(t->rows, t->crows, id + 1);
			struct row *r = &t->rows[id];
			if (!r->frame)
				r->frame = fr[i];
			if (r->mark != mark) { /* recursion: once per stack */
				r->mark = mark;
				SAT_ADD(r->total, v);
			}
			if (i == n - 1)
				SAT_ADD(r->self, v);
		}
	}
	buf__release(&key);
	free(glue);
	free(row_of);
	t->order = xmalloc((t->keys.n + 1) * sizeof(*t->order));
	for (size_t i = 0; i < t->keys.n; i++)
		t->order[i] = i;
}

static const struct table *sort_table;
static bool sort_self;

static int row_cmp(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	const struct row *rx = &sort_table->rows[x], *ry = &sort_table->rows[y];
	int64_t vx = sort_self ? rx->self : rx->total, vy = sort_self ? ry->self : ry->total;
	int64_t ax = vx < 0 ? -vx : vx, ay = vy < 0 ? -vy : vy;
	if (ax != ay)
		return ax > ay ? -1 : 1;
	int64_t sx = sort_self ? rx->total : rx->self, sy = sort_self ? ry->total : ry->self;
	if (sx != sy)
		return sx > sy ? -1 : 1;
	return strcmp(table__key(sort_table, x), table__key(sort_table, y));
}

void table__sort(struct table *t, bool by_self)
{
	sort_table = t;
	sort_self = by_self;
	sort_array(t->order, t->keys.n, sizeof(*t->order), row_cmp);
}

void table__release(struct table *t)
{
	intern__release(&t->keys);
	free(t->rows);
	free(t->order);
	memset(t, 0, sizeof(*t));
}

static const struct folded *sort_folded;

static int line_cmp(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return strcmp(intern__cstr(&sort_folded->lines, (uint32_t)x), intern__cstr(&sort_folded->lines, (uint32_t)y));
}

void folded__build(struct folded *fo, const struct profile *p, const struct view_filter *f)
{
	memset(fo, 0, sizeof(*fo));
	intern__init(&fo->lines);
	bool multi = view__multi_process(p);
	struct buf line;
	buf__init(&line);
	for (size_t ci = 0; ci < p->ncells; ci++) {
		const struct pcell *c = &p->cells[ci];
		if (!view__cell_selected(c, f))
			continue;
		line.len = 0;
		view__folded_line(p, c, f, multi, &line);
		uint32_t id = intern__put(&fo->lines, line.data, (uint32_t)line.len, NULL);
		ARR_GROW(fo->vals, fo->cvals, id + 1);
		SAT_ADD(fo->vals[id], c->v[f->metric]);
		SAT_ADD(fo->sum, c->v[f->metric]);
	}
	buf__release(&line);
	fo->order = xmalloc((fo->lines.n + 1) * sizeof(*fo->order));
	for (size_t i = 0; i < fo->lines.n; i++)
		fo->order[i] = i;
	sort_folded = fo;
	sort_array(fo->order, fo->lines.n, sizeof(*fo->order), line_cmp);
}

void folded__release(struct folded *fo)
{
	intern__release(&fo->lines);
	free(fo->vals);
	free(fo->order);
	memset(fo, 0, sizeof(*fo));
}

static int64_t scaled(int64_t v, double f)
{
	double x = (double)v * f;
	return x >= 9.2e18 ? INT64_MAX : x <= -9.2e18 ? INT64_MIN : (int64_t)(x < 0 ? x - 0.5 : x + 0.5);
}

void table__scale(struct table *t, double f)
{
	for (size_t i = 0; i < t->keys.n; i++) {
		t->rows[i].self = scaled(t->rows[i].self, f);
		t->rows[i].total = scaled(t->rows[i].total, f);
	}
	t->sum = scaled(t->sum, f);
}

void folded__scale(struct folded *fo, double f)
{
	for (size_t i = 0; i < fo->lines.n; i++)
		fo->vals[i] = scaled(fo->vals[i], f);
	fo->sum = scaled(fo->sum, f);
}

static int diff_cmp(const void *a, const void *b)
{
	const struct diff_row *x = a, *y = b;
	int64_t dx = x->new_ - x->base, dy = y->new_ - y->base;
	if (dx < 0)
		dx = -dx;
	if (dy < 0)
		dy = -dy;
	if (dx != dy)
		return dx > dy ? -1 : 1;
	return strcmp(x->key, y->key);
}

static void diff_add(struct diff *d, size_t *cap, const char *key, int64_t base, int64_t new_)
{
	ARR_GROW(d->rows, *cap, d->n + 1);
	d->rows[d->n++] = (struct diff_row){key, base, new_};
}

void diff__tables(struct diff *d, const struct table *base, const struct table *new_, bool use_self)
{
	memset(d, 0, sizeof(*d));
	size_t cap = 0;
	d->base_sum = base->sum;
	d->new_sum = new_->sum;
	for (size_t i = 0; i < new_->keys.n; i++) {
		uint32_t len;
		const char *k = intern__key(&new_->keys, (uint32_t)i, &len);
		int64_t b = intern__get(&base->keys, k, len);
		int64_t nv = use_self ? new_->rows[i].self : new_->rows[i].total;
		int64_t bv = b < 0 ? 0 : (use_self ? base->rows[b].self : base->rows[b].total);
		diff_add(d, &cap, k, bv, nv);
	}
	for (size_t i = 0; i < base->keys.n; i++) {
		uint32_t len;
		const char *k = intern__key(&base->keys, (uint32_t)i, &len);
		if (intern__get(&new_->keys, k, len) >= 0)
			continue;
		diff_add(d, &cap, k, use_self ? base->rows[i].self : base->rows[i].total, 0);
	}
	sort_array(d->rows, d->n, sizeof(*d->rows), diff_cmp);
}

void diff__folded(struct diff *d, const struct folded *base, const struct folded *new_)
{
	memset(d, 0, sizeof(*d));
	size_t cap = 0;
	d->base_sum = base->sum;
	d->new_sum = new_->sum;
	for (size_t i = 0; i < new_->lines.n; i++) {
		uint32_t len;
		const char *k = intern__key(&new_->lines, (uint32_t)i, &len);
		int64_t b = intern__get(&base->lines, k, len);
		diff_add(d, &cap, k, b < 0 ? 0 : base->vals[b], new_->vals[i]);
	}
	for (size_t i = 0; i < base->lines.n; i++) {
		uint32_t len;
		const char *k = intern__key(&base->lines, (uint32_t)i, &len);
		if (intern__get(&new_->lines, k, len) < 0)
			diff_add(d, &cap, k, base->vals[i], 0);
	}
	sort_array(d->rows, d->n, sizeof(*d->rows), diff_cmp);
}

void diff__release(struct diff *d)
{
	free(d->rows);
	memset(d, 0, sizeof(*d));
}
