/* Views of a loaded profile for one metric: the cumulative table (self and
 * total per function, line, file, library or whole stack; a frame that
 * recurs in one stack counts once toward its total), folded stacks, and the
 * difference of two tables. Exporters print these; they compute nothing. */
#ifndef KILN_AGGREGATE_VIEW_H
#define KILN_AGGREGATE_VIEW_H

#include <stdbool.h>
#include "aggregate/profile.h"

enum by_kind { BY_FUNCTION, BY_LINE, BY_FILE, BY_LIB, BY_STACK, BY_PROCESS, BY_TASK, BY_STATE };
/* BY_TASK: a row per asyncio task (the "Task NAME" frame of a stack; "[no
 * task]" without one). BY_STATE: a row per thread and what its stacks show
 * it doing (view__thread_state). */
int by__parse(const char *s); /* -1 when unknown */
const char *by__name(int by);

struct view_filter {
	int metric;
	int64_t pid, tid; /* -1: all */
	bool threads;     /* folded: a THREAD-TID frame after PROGRAM-PID */
	bool all_frames;  /* tables: keep process/thread start-up frames (_start...) */
	bool by_order;    /* PROGRAM#N and THREAD#N (start order) for PROGRAM-PID and
			   * THREAD-TID: how two runs' processes match in a diff */
};

/* What a Python program's thread was doing in a stack: "GIL wait" (a frame
 * of the calls that wait for the GIL, or a condition-variable wait of the
 * interpreter's own: view__waits_for_gil), "idle" (its innermost frame is a
 * call that waits: sleep, poll, a lock, a read), "Python" (the interpreter
 * itself innermost: Python code running), else "native" (code of another
 * library, the GIL released or never held). */
const char *view__thread_state(const struct profile *p, uint32_t stack);
/* Whether a stack is in take_gil or drop_gil, or in one of the exported
 * calls that are on a stack only while take_gil waits, or in a
 * condition-variable or pthread mutex wait the interpreter made itself (a
 * stripped interpreter names no static function; on Linux only the GIL's
 * hand-over waits on those there): native frames included, whatever the view
 * shows. kiln
 * dump judges a thread waiting for the GIL by it (between two timed waits
 * it is running, still waiting), --by state too. */
bool view__waits_for_gil(const struct profile *p, uint32_t stack);
/* Whether a stack is a suspended asyncio task's wait (--wall charges it
 * besides the thread's own samples): its outermost frame is "Task NAME". */
bool view__task_wait(const struct profile *p, uint32_t stack);
/* Whether a cell passes the filter (and has a value for the metric). */
bool view__cell_selected(const struct pcell *c, const struct view_filter *f);
/* Whether the profile holds several processes (folded's PROGRAM-PID frame). */
bool view__multi_process(const struct profile *p);
/* The key a frame has under a unit ("main", "main (a.c:12)", "a.c", "libc.so.6"). */
void view__frame_key(const struct profile *p, const struct pframe *f, int by, struct buf *out);
/* The frames of a cell as text, root first, ';'-separated, with the
 * PROGRAM-PID and THREAD-TID prefixes as the filter asks. */
void view__folded_line(const struct profile *p, const struct pcell *c, const struct view_filter *f, bool multi,
		       struct buf *out);

struct row {
	int64_t self, total;
	uint32_t mark;
	const struct pframe *frame; /* an example (for file:line, module) */
};

struct table {
	struct intern keys; /* row i has key i */
	struct row *rows;
	size_t crows;
	size_t *order; /* sorted row indexes */
	int64_t sum;   /* the metric's total over selected cells */
	int metric, by;
	uint64_t cells;
};

void table__build(struct table *t, const struct profile *p, const struct view_filter *f, int by);
/* Order rows by self or total, descending, ties by key. */
void table__sort(struct table *t, bool by_self);
static inline size_t table__nrows(const struct table *t) { return t->keys.n; }
static inline const char *table__key(const struct table *t, size_t row) { return intern__cstr(&t->keys, (uint32_t)row); }
void table__release(struct table *t);

/* Folded stacks: distinct lines with their summed values, sorted by line. */
struct folded {
	struct intern lines;
	int64_t *vals;
	size_t cvals;
	size_t *order;
	int64_t sum;
};
void folded__build(struct folded *fo, const struct profile *p, const struct view_filter *f);
void folded__release(struct folded *fo);

/* A diff row: one key with its value in base and new. */
struct diff_row {
	const char *key;
	int64_t base, new_;
};
struct diff {
	struct diff_row *rows;
	size_t n;
	int64_t base_sum, new_sum;
	double base_scale;     /* != 0: shares compared, the base scaled by it first */
	int64_t base_raw_sum;  /* the base's total before scaling */
};
/* Rows of two tables (their totals, or self for BY_STACK) by key, ordered
 * by the size of the change. Keys point into the tables. */
void diff__tables(struct diff *d, const struct table *base, const struct table *new_, bool use_self);
/* Same over folded lines (signed values new - base). */
void diff__folded(struct diff *d, const struct folded *base, const struct folded *new_);
void diff__release(struct diff *d);
/* Multiply every value by f (rounded, saturating): a diff of shares scales
 * the base to the new total first, as pprof's -diff_base -normalize does. */
void table__scale(struct table *t, double f);
void folded__scale(struct folded *fo, double f);

#endif
