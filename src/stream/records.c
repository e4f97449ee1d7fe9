/* Record payloads (see records.h). */
#include <stdlib.h>
#include <string.h>
#include "kiln/kiln.h"
#include "stream/records.h"

/* ---- PROCESS: u32 pid, u32 ppid, u64 start_ns, str comm, str exe ---- */
void rec_process__encode(struct buf *b, uint32_t pid, uint32_t ppid, uint64_t start_ns, const char *name,
			 const char *exe)
{
	buf__u32(b, pid);
	buf__u32(b, ppid);
	buf__u64(b, start_ns);
	buf__str(b, name ? name : "");
	buf__str(b, exe ? exe : "");
}

int rec_process__decode(const void *p, size_t n, struct rec_process *r)
{
	struct cursor c;
	cursor__init(&c, p, n);
	memset(r, 0, sizeof(*r));
	cursor__u32(&c, &r->pid);
	cursor__u32(&c, &r->ppid);
	cursor__u64(&c, &r->start_ns);
	r->name = cursor__text(&c);
	r->exe = cursor__text(&c);
	if (c.bad) {
		rec_process__release(r);
		return -1;
	}
	return 0;
}

void rec_process__release(struct rec_process *r)
{
	free(r->name);
	free(r->exe);
	r->name = r->exe = NULL;
}

/* ---- THREAD: u32 pid, u32 tid, str name ---- */
void rec_thread__encode(struct buf *b, uint32_t pid, uint32_t tid, const char *name)
{
	buf__u32(b, pid);
	buf__u32(b, tid);
	buf__str(b, name ? name : "");
}

int rec_thread__decode(const void *p, size_t n, struct rec_thread *r)
{
	struct cursor c;
	cursor__init(&c, p, n);
	cursor__u32(&c, &r->pid);
	cursor__u32(&c, &r->tid);
	r->name = cursor__text(&c);
	if (c.bad) {
		free(r->name);
		r->name = NULL;
		return -1;
	}
	return 0;
}

/* ---- EXIT: u32 pid, i32 status, u64 end_ns ---- */
void rec_exit__encode(struct buf *b, const struct rec_exit *r)
{
	buf__u32(b, r->pid);
	buf__u32(b, (uint32_t)r->status);
	buf__u64(b, r->end_ns);
}

int rec_exit__decode(const void *p, size_t n, struct rec_exit *r)
{
	struct cursor c;
	uint32_t st;
	cursor__init(&c, p, n);
	cursor__u32(&c, &r->pid);
	cursor__u32(&c, &st);
	cursor__u64(&c, &r->end_ns);
	r->status = (int32_t)st;
	return c.bad ? -1 : 0;
}

/* ---- MODULE: u32 id, u8 kind, u32 pid, str path, str build_id ---- */
void rec_module__encode(struct buf *b, uint32_t id, uint8_t kind, uint32_t pid, const char *path,
			const char *build_id)
{
	buf__u32(b, id);
	buf__u8(b, kind);
	buf__u32(b, pid);
	buf__str(b, path ? path : "");
	buf__str(b, build_id ? build_id : "");
}

int rec_module__decode(const void *p, size_t n, struct rec_module *r)
{
	struct cursor c;
	cursor__init(&c, p, n);
	memset(r, 0, sizeof(*r));
	cursor__u32(&c, &r->id);
	cursor__u8(&c, &r->kind);
	cursor__u32(&c, &r->pid);
	r->path = cursor__text(&c);
	r->build_id = cursor__text(&c);
	if (c.bad || r->kind > MOD_PYTHON) {
		rec_module__release(r);
		return -1;
	}
	return 0;
}

void rec_module__release(struct rec_module *r)
{
	free(r->path);
	free(r->build_id);
	r->path = r->build_id = NULL;
}

/* ---- LOC: u32 id, u32 module, u64 addr, u8 flags ---- */
void rec_loc__encode(struct buf *b, const struct rec_loc *r)
{
	buf__u32(b, r->id);
	buf__u32(b, r->module);
	buf__u64(b, r->addr);
	buf__u8(b, r->flags);
}

int rec_loc__decode(const void *p, size_t n, struct rec_loc *r)
{
	struct cursor c;
	cursor__init(&c, p, n);
	cursor__u32(&c, &r->id);
	cursor__u32(&c, &r->module);
	cursor__u64(&c, &r->addr);
	cursor__u8(&c, &r->flags);
	return c.bad ? -1 : 0;
}

/* ---- SYM: u32 loc, u16 n, n x {str func, str file, u32 line, u8 inlined} ---- */
void rec_sym__begin(struct buf *b, uint32_t loc, uint16_t n)
{
	buf__u32(b, loc);
	buf__u16(b, n);
}

void rec_sym__frame(struct buf *b, const char *func, const char *file, uint32_t line, uint8_t inlined)
{
	buf__str(b, func ? func : "");
	buf__str(b, file ? file : "");
	buf__u32(b, line);
	buf__u8(b, inlined);
}

void rec_sym__def_lines(struct buf *b, const uint32_t *def_lines, uint16_t n)
{
	for (uint16_t i = 0; i < n; i++)
		buf__u32(b, def_lines[i]);
}

int rec_sym__decode(const void *p, size_t n, struct rec_sym *r)
{
	struct cursor c;
	cursor__init(&c, p, n);
	memset(r, 0, sizeof(*r));
	cursor__u32(&c, &r->loc);
	cursor__u16(&c, &r->n);
	if (c.bad || r->n == 0 || r->n > REC_SYM_MAX_FRAMES)
		return -1;
	r->f = xcalloc(r->n, sizeof(*r->f));
	for (uint16_t i = 0; i < r->n; i++) {
		struct rec_frame *f = &r->f[i];
		f->func = cursor__text(&c);
		f->file = cursor__text(&c);
		cursor__u32(&c, &f->line);
		cursor__u8(&c, &f->inlined);
		if (c.bad || f->inlined > 2) {
			rec_sym__release(r);
			return -1;
		}
	}
	size_t left = cursor__left(&c);
	if (left && left != (size_t)r->n * 4) {
		rec_sym__release(r);
		return -1;
	}
	for (uint16_t i = 0; left && i < r->n; i++)
		cursor__u32(&c, &r->f[i].def_line);
	return 0;
}

void rec_sym__release(struct rec_sym *r)
{
	for (uint16_t i = 0; r->f && i < r->n; i++) {
		free(r->f[i].func);
		free(r->f[i].file);
	}
	free(r->f);
	r->f = NULL;
	r->n = 0;
}

/* ---- STACK: u32 id, u16 flags, u16 depth, u32 loc[depth] ---- */
void rec_stack__encode(struct buf *b, uint32_t id, uint16_t flags, uint16_t depth, const uint32_t *locs)
{
	buf__u32(b, id);
	buf__u16(b, flags);
	buf__u16(b, depth);
	for (uint16_t i = 0; i < depth; i++)
		buf__u32(b, locs[i]);
}

int rec_stack__decode(const void *p, size_t n, struct rec_stack *r)
{
	struct cursor c;
	cursor__init(&c, p, n);
	r->locs = NULL;
	cursor__u32(&c, &r->id);
	cursor__u16(&c, &r->flags);
	cursor__u16(&c, &r->depth);
	if (c.bad || r->depth > KILN_MAX_DEPTH || cursor__left(&c) != (size_t)r->depth * 4)
		return -1;
	r->locs = xmalloc((size_t)r->depth * 4 + 4);
	for (uint16_t i = 0; i < r->depth; i++)
		cursor__u32(&c, &r->locs[i]);
	return 0;
}

/* ---- COUNTS: u32 n, n x {u32 pid, u32 tid, u32 stack, u8 metric, i64 value} ---- */
#define COUNT_SIZE 21

static void count_entry(struct buf *b, const struct rec_count *e)
{
	buf__u32(b, e->pid);
	buf__u32(b, e->tid);
	buf__u32(b, e->stack);
	buf__u8(b, e->metric);
	buf__u64(b, (uint64_t)e->value);
}

void rec_counts__begin(struct buf *b)
{
	b->len = 0;
	buf__u32(b, 0);
}

void rec_counts__add(struct buf *b, const struct rec_count *e)
{
	uint32_t n;
	memcpy(&n, b->data, 4);
	n++;
	memcpy(b->data, &n, 4);
	count_entry(b, e);
}

uint32_t rec_counts__n(const struct buf *b)
{
	uint32_t n = 0;
	if (b->len >= 4)
		memcpy(&n, b->data, 4);
	return n;
}

int rec_counts__open(struct cursor *c, const void *p, size_t n, uint32_t *count)
{
	cursor__init(c, p, n);
	cursor__u32(c, count);
	return c->bad || cursor__left(c) != (size_t)*count * COUNT_SIZE ? -1 : 0;
}

int rec_counts__next(struct cursor *c, struct rec_count *e)
{
	if (!cursor__left(c))
		return 0;
	uint64_t v;
	cursor__u32(c, &e->pid);
	cursor__u32(c, &e->tid);
	cursor__u32(c, &e->stack);
	cursor__u8(c, &e->metric);
	cursor__u64(c, &v);
	e->value = (int64_t)v;
	return c->bad ? -1 : 1;
}

/* ---- WINDOW: u64 t_ns, u32 n, n x {u32 pid, u32 tid, u32 stack, u8 metric, i64 delta} ---- */
void rec_window__begin(struct buf *b, uint64_t t_ns)
{
	b->len = 0;
	buf__u64(b, t_ns);
	buf__u32(b, 0);
}

uint32_t rec_window__n(const struct buf *b)
{
	uint32_t n = 0;
	if (b->len >= 12)
		memcpy(&n, b->data + 8, 4);
	return n;
}

void rec_window__add(struct buf *b, const struct rec_count *e)
{
	uint32_t n = rec_window__n(b) + 1;
	memcpy(b->data + 8, &n, 4);
	count_entry(b, e);
}

int rec_window__open(struct cursor *c, const void *p, size_t n, uint64_t *t_ns, uint32_t *count)
{
	struct cursor h;
	cursor__init(&h, p, n);
	if (!cursor__u64(&h, t_ns))
		return -1;
	return rec_counts__open(c, (const unsigned char *)p + 8, n - 8, count);
}

/* ---- END: u64 end_ns, u64 samples, u64 lost ---- */
void rec_end__encode(struct buf *b, const struct rec_end *r)
{
	buf__u64(b, r->end_ns);
	buf__u64(b, r->samples);
	buf__u64(b, r->lost);
}

int rec_end__decode(const void *p, size_t n, struct rec_end *r)
{
	struct cursor c;
	cursor__init(&c, p, n);
	cursor__u64(&c, &r->end_ns);
	cursor__u64(&c, &r->samples);
	cursor__u64(&c, &r->lost);
	return c.bad ? -1 : 0;
}

/* ---- LOST, TIME: u64 ---- */
void rec_u64__encode(struct buf *b, uint64_t v)
{
	buf__u64(b, v);
}

int rec_u64__decode(const void *p, size_t n, uint64_t *v)
{
	struct cursor c;
	cursor__init(&c, p, n);
	return cursor__u64(&c, v) && !cursor__left(&c) ? 0 : -1;
}

/* ---- HEAP_LOSS: u32 pid, u8 cause, u64 count ---- */
void rec_heap_loss__encode(struct buf *b, const struct rec_heap_loss *r)
{
	buf__u32(b, r->pid);
	buf__u8(b, r->cause);
	buf__u64(b, r->count);
}

int rec_heap_loss__decode(const void *p, size_t n, struct rec_heap_loss *r)
{
	struct cursor c;
	cursor__init(&c, p, n);
	cursor__u32(&c, &r->pid);
	cursor__u8(&c, &r->cause);
	cursor__u64(&c, &r->count);
	return c.bad || cursor__left(&c) || r->cause >= HL__COUNT ? -1 : 0;
}

/* ---- TIMELINE: u64 t_ns, u16 n, n x {u32 pid, i64 heap, u64 rss} ---- */
void rec_timeline__encode(struct buf *b, uint64_t t_ns, const struct rec_timeline_ent *e, uint16_t n)
{
	buf__u64(b, t_ns);
	buf__u16(b, n);
	for (uint16_t i = 0; i < n; i++) {
		buf__u32(b, e[i].pid);
		buf__u64(b, (uint64_t)e[i].heap);
		buf__u64(b, e[i].rss);
	}
}

int rec_timeline__decode(const void *p, size_t n, uint64_t *t_ns, struct rec_timeline_ent *out)
{
	struct cursor c;
	uint16_t k;
	cursor__init(&c, p, n);
	cursor__u64(&c, t_ns);
	cursor__u16(&c, &k);
	if (c.bad || k > TIMELINE_MAX_ENTRIES)
		return -1;
	for (uint16_t i = 0; i < k; i++) {
		uint64_t heap;
		cursor__u32(&c, &out[i].pid);
		cursor__u64(&c, &heap);
		cursor__u64(&c, &out[i].rss);
		out[i].heap = (int64_t)heap;
	}
	return c.bad || cursor__left(&c) ? -1 : k;
}

/* ---- SLOW: u32 pid, u32 tid, u64 start_ns, u64 duration_ns, u32 stack, str task ---- */
void rec_slow__encode(struct buf *b, const struct rec_slow *r)
{
	buf__u32(b, r->pid);
	buf__u32(b, r->tid);
	buf__u64(b, r->start_ns);
	buf__u64(b, r->dur_ns);
	buf__u32(b, r->stack);
	buf__str(b, r->task ? r->task : "");
}

int rec_slow__decode(const void *p, size_t n, struct rec_slow *r)
{
	struct cursor c;
	cursor__init(&c, p, n);
	memset(r, 0, sizeof(*r));
	cursor__u32(&c, &r->pid);
	cursor__u32(&c, &r->tid);
	cursor__u64(&c, &r->start_ns);
	cursor__u64(&c, &r->dur_ns);
	cursor__u32(&c, &r->stack);
	r->task = cursor__text(&c);
	if (c.bad || cursor__left(&c) || !r->task) {
		free(r->task);
		r->task = NULL;
		return -1;
	}
	return 0;
}
