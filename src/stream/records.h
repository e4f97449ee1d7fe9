/* Every record type's payload (format.h), in one place: a struct, the one
 * encoder and the one decoder. The recorder writes with the encoders, the
 * reader reads with the decoders, the unit fixtures build files with the
 * encoders; what a record holds is written down nowhere else.
 *
 * Decoders trust nothing: every read is bounds-checked (a payload too short
 * or too long is refused: -1), and every string comes back cleaned for
 * people and every output format (cursor__text). What a decoder returns
 * with strings or arrays is the caller's, freed by the type's __release. */
#ifndef KILN_STREAM_RECORDS_H
#define KILN_STREAM_RECORDS_H

#include <stdbool.h>
#include <stdint.h>
#include "stream/format.h"
#include "util/util.h"

struct rec_process {
	uint32_t pid, ppid;
	uint64_t start_ns;
	char *name, *exe;
};
void rec_process__encode(struct buf *b, uint32_t pid, uint32_t ppid, uint64_t start_ns, const char *name,
			 const char *exe);
int rec_process__decode(const void *p, size_t n, struct rec_process *r);
void rec_process__release(struct rec_process *r);

struct rec_thread {
	uint32_t pid, tid;
	char *name;
};
void rec_thread__encode(struct buf *b, uint32_t pid, uint32_t tid, const char *name);
int rec_thread__decode(const void *p, size_t n, struct rec_thread *r);

struct rec_exit {
	uint32_t pid;
	int32_t status; /* wait status, -1 unknown */
	uint64_t end_ns;
};
void rec_exit__encode(struct buf *b, const struct rec_exit *r);
int rec_exit__decode(const void *p, size_t n, struct rec_exit *r);

struct rec_module {
	uint32_t id, pid;
	uint8_t kind; /* MOD_* */
	char *path, *build_id;
};
void rec_module__encode(struct buf *b, uint32_t id, uint8_t kind, uint32_t pid, const char *path,
			const char *build_id);
int rec_module__decode(const void *p, size_t n, struct rec_module *r);
void rec_module__release(struct rec_module *r);

struct rec_loc {
	uint32_t id, module;
	uint64_t addr;
	uint8_t flags; /* LOC_* */
};
void rec_loc__encode(struct buf *b, const struct rec_loc *r);
int rec_loc__decode(const void *p, size_t n, struct rec_loc *r);

/* SYM: the frames of a location, innermost first (1..64), then, where
 * known, each frame's def line (a Python function's co_firstlineno: with
 * its name and file it tells two functions apart); files without them
 * read as 0. */
struct rec_frame {
	char *func, *file;
	uint32_t line;
	uint32_t def_line; /* 0: unknown */
	uint8_t inlined; /* 0 a function, 1 inlined into the next, 2 entered by a tail call */
};
struct rec_sym {
	uint32_t loc;
	uint16_t n;
	struct rec_frame *f;
};
void rec_sym__begin(struct buf *b, uint32_t loc, uint16_t n);
void rec_sym__frame(struct buf *b, const char *func, const char *file, uint32_t line, uint8_t inlined);
/* After the n frames: their def lines (optional). */
void rec_sym__def_lines(struct buf *b, const uint32_t *def_lines, uint16_t n);
int rec_sym__decode(const void *p, size_t n, struct rec_sym *r);
void rec_sym__release(struct rec_sym *r);
#define REC_SYM_MAX_FRAMES 64

struct rec_stack {
	uint32_t id;
	uint16_t flags, depth; /* STACK_*; depth <= KILN_MAX_DEPTH */
	uint32_t *locs;        /* leaf first */
};
void rec_stack__encode(struct buf *b, uint32_t id, uint16_t flags, uint16_t depth, const uint32_t *locs);
int rec_stack__decode(const void *p, size_t n, struct rec_stack *r);

/* COUNTS: a batch of entries. */
struct rec_count {
	uint32_t pid, tid, stack;
	uint8_t metric;
	int64_t value;
};
void rec_counts__begin(struct buf *b);                  /* an empty batch */
void rec_counts__add(struct buf *b, const struct rec_count *e);
uint32_t rec_counts__n(const struct buf *b);
/* Entries one at a time: start with rec_counts__open; next gives 1, 0 at the
 * end, -1 when the payload is malformed. */
int rec_counts__open(struct cursor *c, const void *p, size_t n, uint32_t *count);
int rec_counts__next(struct cursor *c, struct rec_count *e);

/* WINDOW: u64 t_ns, then the COUNTS layout (values are deltas, may be
 * negative): rec_window__begin starts one, rec_counts__add adds entries,
 * rec_window__counts gives the COUNTS part; rec_window__open reads t_ns and
 * opens the entries for rec_counts__next. */
void rec_window__begin(struct buf *b, uint64_t t_ns);
uint32_t rec_window__n(const struct buf *b);
void rec_window__add(struct buf *b, const struct rec_count *e);
int rec_window__open(struct cursor *c, const void *p, size_t n, uint64_t *t_ns, uint32_t *count);

struct rec_end {
	uint64_t end_ns, samples, lost;
};
void rec_end__encode(struct buf *b, const struct rec_end *r);
int rec_end__decode(const void *p, size_t n, struct rec_end *r);

/* LOST and TIME: one u64 each. */
void rec_u64__encode(struct buf *b, uint64_t v);
int rec_u64__decode(const void *p, size_t n, uint64_t *v);

struct rec_heap_loss {
	uint32_t pid;
	uint8_t cause; /* enum kiln_heap_loss */
	uint64_t count;
};
void rec_heap_loss__encode(struct buf *b, const struct rec_heap_loss *r);
int rec_heap_loss__decode(const void *p, size_t n, struct rec_heap_loss *r);

/* SLOW: a stretch in which one callback or task step held an asyncio event
 * loop (the samples saw the same Handle running throughout). */
struct rec_slow {
	uint32_t pid, tid;
	uint64_t start_ns, dur_ns; /* realtime start; duration estimated from the samples */
	uint32_t stack;            /* the last sample's stack in it */
	char *task;                /* "Task NAME", or "" for a callback of no task */
};
void rec_slow__encode(struct buf *b, const struct rec_slow *r);
int rec_slow__decode(const void *p, size_t n, struct rec_slow *r);

/* TIMELINE: a point of memory over time (format.h). */
struct rec_timeline_ent {
	uint32_t pid;
	int64_t heap;
	uint64_t rss;
};
void rec_timeline__encode(struct buf *b, uint64_t t_ns, const struct rec_timeline_ent *e, uint16_t n);
/* Entries into out (room for TIMELINE_MAX_ENTRIES); their count, -1 when malformed. */
int rec_timeline__decode(const void *p, size_t n, uint64_t *t_ns, struct rec_timeline_ent *out);

#endif
