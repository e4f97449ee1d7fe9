/* asyncio tasks of a CPython 3.11-3.13 process, read from its memory while
 * the sampled thread is stopped (the ptrace sampler: --wall, kiln dump).
 *
 *   running:    the thread's frames hold events.Handle._run: its `self`
 *               (localsplus[0]) is the Handle; Handle._callback (a slot, its
 *               offset from the type's member table) is the task's step
 *               (TaskStepMethWrapper.sw_task) or its wakeup (a builtin method
 *               whose __self__ is the task).
 *   suspended:  BaseEventLoop._run_once's globals (asyncio.base_events) name
 *               the module `tasks`, whose _all_tasks (3.11) or
 *               _scheduled_tasks (3.12+, a WeakSet: its `data` set of
 *               weak references) and _eager_tasks (a set) hold every task;
 *               those of this loop still pending are the suspended ones.
 *   await chain: a task's coroutine, and while it is suspended in an
 *               await, the coroutine on its value stack's top, and so on; a
 *               gather's future ends it as "gather".
 *
 * Offsets are include/kiln/python.h's table row of the version. Every object
 * is believed only while its type's name says what it is; every count and
 * chain is bounded. */
#ifndef KILN_COLLECT_PYASYNC_H
#define KILN_COLLECT_PYASYNC_H

#include <stdbool.h>
#include <stdint.h>
#include "collect/python.h"

#define PYASYNC_CHAIN 24  /* frames of one task's await chain */
#define PYASYNC_TASKS 512 /* suspended tasks charged at one sample */

struct pytask {
	uint64_t addr, handle;
	char name[128];                      /* "Task hog" */
	struct pyframe chain[PYASYNC_CHAIN]; /* innermost first; a "gather" label may end it */
	int nchain;
};

struct pyasync;
struct pyasync *pyasync__new(struct pyproc *pp);
void pyasync__free(struct pyasync *a);
/* Where the loop's frames are among fr (innermost first, n): the index of
 * Handle._run (a callback running) and of BaseEventLoop._run_once, -1 for
 * none. One pass, from the outermost frames in. */
struct pyasync_at {
	int handle, run_once;
};
void pyasync__scan(struct pyasync *a, const struct pyframe *fr, int n, struct pyasync_at *w);
/* The task running in the Handle._run frame fr[at]: 0 with out->name (the
 * "Task NAME" frame goes just inside it), 1 for a callback of no task
 * (out->handle set), -1 when none can be read. */
int pyasync__running(struct pyasync *a, const struct pyframe *fr, int at, struct pytask *out);
/* The event loop whose _run_once frame is fr[run_once] (its self), 0 none. */
uint64_t pyasync__loop(struct pyasync *a, const struct pyframe *fr, int run_once);
/* The tasks of loop still pending but `running`, each with its await
 * chain, into out (at most max). The count; *more: some were left out. */
int pyasync__suspended(struct pyasync *a, const struct pyframe *fr, int n, int run_once, uint64_t loop,
		       uint64_t running, struct pytask *out, int max, bool *more);

#endif
