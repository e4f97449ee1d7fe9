/* A profile file loaded into memory: modules, symbolized locations, interned
 * stacks and the cells (process, thread, stack) that carry each metric's
 * value. Every reader of profiles (report, export, diff, flamegraph) starts
 * here; nothing in it trusts the file. */
#ifndef KILN_AGGREGATE_PROFILE_H
#define KILN_AGGREGATE_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "kiln/kiln.h"
#include "util/util.h"

struct pframe {
	uint32_t func, file; /* ids in profile.strings; file "" when unknown */
	uint32_t line;
	uint32_t name;       /* the function's name as shown: func, or where two
			      * functions share it, "func (file)" (profile_name_functions, profile_names.c) */
	uint32_t def_line;   /* a Python function's def line; 0 unknown */
	uint32_t module;     /* index in modules, or UINT32_MAX */
	uint8_t inlined;
	uint8_t kind;        /* enum frame_kind, for colouring */
};

enum frame_kind { FK_PROGRAM, FK_LIBRARY, FK_KERNEL, FK_JIT, FK_INLINED, FK_MARKER, FK_PYTHON };

struct pmodule {
	char *path, *build_id;
	uint8_t kind;
	uint32_t pid;
};

struct ploc {
	uint32_t module;
	uint64_t addr;
	uint8_t flags;
	uint16_t nframes; /* innermost first */
	struct pframe *frames;
	uint16_t ntail;   /* functions the call here entered by tail calls, innermost first */
	struct pframe *tail;
};

struct pstack {
	uint16_t depth, flags;
	uint32_t *locs; /* leaf first */
};

struct pprocess {
	uint32_t pid, ppid;
	char *name, *exe;
	uint64_t start_ns, end_ns;
	int status; /* wait status, -1 unknown */
	bool exited;
	uint32_t ord; /* among the processes of its program, in start order, from 1 */
};

struct pthread {
	uint32_t pid, tid;
	char *name;
	uint32_t ord; /* among its process's threads of that name, in tid order, from 1 */
};

struct pcell {
	uint32_t pid, tid, stack;
	int64_t v[KM__COUNT];
};

/* Heap events lost in a process, by cause (enum kiln_heap_loss). */
struct ploss {
	uint32_t pid;
	uint8_t cause;
	uint64_t count;
};

/* A point of memory over time (REC_TIMELINE): heap is the most bytes live
 * in pid since the point before (TIMELINE_NO_HEAP: not tracked), rss the
 * resident set (TIMELINE_NO_RSS: unknown); pid 0 is every process. */
struct ppoint {
	uint64_t t_ns; /* realtime */
	uint32_t pid;
	int64_t heap;
	uint64_t rss;
};

/* A stretch in which one callback held an asyncio event loop (REC_SLOW). */
struct pslow {
	uint32_t pid, tid, stack;
	uint64_t start_ns, dur_ns;
	uint32_t task; /* string id: "Task NAME", "" for a callback of no task */
};

/* A stretch of the recording (REC_WINDOW records of one time): what each
 * cell gained in it (stream/format.h), ending at t_ns; entries
 * [first, first + n) of profile.wents. In file order, times never
 * decreasing (a clock stepped back is held at the time before). */
struct pwindow {
	uint64_t t_ns;
	size_t first, n;
};
struct pwent {
	uint32_t cell;   /* index in profile.cells */
	uint8_t metric;  /* KM_CPU, KM_WALL, KM_ALLOC_*, KM_LIVE_* (a signed delta) */
	int64_t delta;
};

struct profile {
	char *path;
	json_t *meta;
	const char *kind;    /* "profile" or "snapshot" */
	const char *program; /* from meta */
	uint64_t heap_sample; /* from meta: the --heap-sample mean, 0 when every allocation was seen */
	struct intern strings;
	struct pmodule *modules;
	size_t nmodules, cmodules;
	struct ploc *locs;
	size_t nlocs, clocs;
	struct pstack *stacks;
	size_t nstacks, cstacks;
	struct pprocess *procs;
	size_t nprocs, cprocs;
	struct pthread *threads;
	size_t nthreads, cthreads;
	struct pcell *cells;
	size_t ncells, ccells;
	struct ploss *losses;
	size_t nlosses, closses;
	struct ppoint *points; /* in file order: by time */
	size_t npoints, cpoints;
	struct pslow *slows;
	size_t nslows, cslows;
	struct pwindow *wins;
	size_t nwins, cwins;
	struct pwent *wents;
	size_t nwents, cwents;
	struct intern cellkeys;
	struct u64map procidx, thridx; /* pid / pid<<32|tid -> index */
	struct u64map lossidx;         /* pid<<8|cause -> index in losses */
	uint64_t start_ns, end_ns, samples, lost;
	uint64_t last_ns;    /* the last REC_TIME: how far a file cut short got */
	bool complete;       /* ended with REC_END */
	bool has[KM__COUNT]; /* metric has any value */
	char warning[400];   /* set when the file was cut short */
	uint32_t str_unknown, str_truncated, str_empty, str_native;
	bool python_only; /* stacks show their Python frames alone (profile__stack_frames) */
	bool ranged;      /* the cells hold a stretch of time (profile__time_range) */
	double range_from, range_to;
};

/* Load and validate a profile file. 0 on success (p->warning may be set),
 * -1 with a one-line reason in err (the caller names the file). */
int profile__load(struct profile *p, const char *path, char *err, size_t errlen);
/* Same from bytes in memory (fuzzing, tests). */
int profile__load_mem(struct profile *p, const void *data, size_t n, char *err, size_t errlen);
void profile__release(struct profile *p);

/* The metric shown when the user names none (see the contract). */
int profile__default_metric(const struct profile *p);
/* (a stretch of time: cpu, else wall, else live_bytes, what was live at its end) */

/* Frames of a stack, root first, into out (at most max); a truncated stack
 * starts with a "[truncated]" marker frame. With python_only set, only the
 * Python frames (a stack with none is one "[native]" frame, so totals stay
 * whole), as py-spy shows without --native. Returns the count. */
size_t profile__stack_frames(const struct profile *p, uint32_t stack, const struct pframe **out, size_t max);
/* A realtime stamp as seconds from the recording's start (0 before it). */
static inline double profile__seconds(const struct profile *p, uint64_t t_ns)
{
	return t_ns > p->start_ns ? (double)(t_ns - p->start_ns) / 1e9 : 0;
}
static inline const char *profile__str(const struct profile *p, uint32_t id)
{
	return intern__cstr(&p->strings, id);
}
const struct pprocess *profile__process(const struct profile *p, uint32_t pid);
const struct pthread *profile__thread(const struct profile *p, uint32_t pid, uint32_t tid);
/* "name" of a process for PROGRAM-PID frames: its exe's base name. */
const char *profile__process_name(const struct profile *p, uint32_t pid);
/* Heap losses summed by cause, of one pid (pid < 0: all) into out. */
void profile__heap_loss(const struct profile *p, int64_t pid, uint64_t out[HL__COUNT]);
/* Duration of the recording in seconds (0 when unknown). */
double profile__duration(const struct profile *p);

/* profile_time.c: a stretch of the recording, [from, to] seconds from its
 * start, widened to the edges of the windows it touches (*from, *to become
 * the range shown). Every cell's cpu, wall, alloc_bytes and alloc_count
 * become what the range holds, live_bytes and live_count what was
 * allocated before its end and not freed by then (an image that ended
 * keeps its leaks there: at the recording's end live_* is leak_*); the
 * other metrics, which no window holds, become 0 (the caller
 * refuses them). -1 with a reason in err when the profile has no windows
 * (recorded before kiln had them, or a snapshot). */
int profile__time_range(struct profile *p, double *from, double *to, char *err, size_t errlen);
/* Whether metric m can be shown for a stretch of time. */
bool profile__time_metric(int m);
/* A window's end in seconds from the recording's start. */
double profile__window_end(const struct profile *p, size_t i);
/* fn for each entry of metric m in the windows of the stretch shown
 * (every window when none is), in time order: its cell, its window's end
 * (seconds from the start), its delta. */
typedef void (*profile_window_fn)(void *arg, uint32_t cell, double end, int64_t delta);
void profile__window_each(const struct profile *p, int m, profile_window_fn fn, void *arg);
/* Whether the windows (of the stretch shown) give every cell's value of
 * metric m, so samples can be placed in time by them: cpu, wall, alloc_*
 * of a whole file (not one cut between its counts and its windows, nor one
 * recorded before windows). */
bool profile__windows_whole(const struct profile *p, int m);

#define PROFILE_MAX_FRAMES (KILN_MAX_DEPTH * 8 + 1)

#endif
