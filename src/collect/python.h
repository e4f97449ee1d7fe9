/* Python frames: what a CPython process's threads are running, read from
 * its memory (process_vm_readv), and merged into native stacks.
 *
 *   native (leaf first):  PyLong_FromLong  _PyEval_EvalFrameDefault  PyObject_Call  _PyEval_EvalFrameDefault  main
 *   Python (leaf first):  work  py_a  │entry│  <module>  │entry│
 *   merged:               PyLong_FromLong  work  py_a  PyObject_Call  <module>  main
 *
 * Each _PyEval_EvalFrameDefault native frame is replaced by the Python frames
 * that call of the evaluation loop runs (the interpreter marks where each
 * call's frames end: 3.11 is_entry, 3.12+ an entry frame owned by the C
 * stack). A stack whose counts do not agree is kept native and counted as
 * not merged, never guessed. Offsets are include/kiln/python.h's tables. */
#ifndef KILN_COLLECT_PYTHON_H
#define KILN_COLLECT_PYTHON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct image;
struct pyproc;

struct pyframe {
	uint64_t code;     /* the code object's address; 0 for an empty call of the loop */
	uint64_t addr;     /* the interpreter frame's address (pyproc__frames), 0 unknown */
	const char *label; /* not a function: a frame kiln names, e.g. "Task hog" (code 1) */
	uint32_t lasti;    /* instruction index (code units) */
	int32_t first;     /* with has_first: the code object's first line when the frame was seen */
	bool has_first;
	bool last_of_call; /* the outermost frame of one _PyEval_EvalFrameDefault call */
};

/* A CPython runtime in img (the interpreter or libpython), mapped at bias in
 * pid: NULL when img holds none. When img holds one kiln cannot read (a
 * version without a table), NULL and a one-line reason in why. */
struct pyproc *pyproc__detect(const struct image *img, uint64_t bias, pid_t pid, char *why, size_t n);

/* Bytes of names and location tables held for all Python processes
 * together (bounded: 256 MiB). */
size_t python__held(void);
void pyproc__free(struct pyproc *pp);
/* "3.11" and the like. */
const char *pyproc__version(const struct pyproc *pp);
/* Whether code is an interpreter shim that runs no user code (3.13's
 * _Py_InitCleanup between a class call and its __init__). */
bool pyproc__is_shim(const struct pyproc *pp, uint64_t code);
/* Whether ip (runtime) is in _PyEval_EvalFrameDefault. */
bool pyproc__is_eval(const struct pyproc *pp, uint64_t ip);
/* 3.10: ip is in one of the functions its loop calls a Python function
 * through (_PyEval_Vector, _PyFunction_Vectorcall, method_vectorcall, ...). */
bool pyproc__is_call_path(const struct pyproc *pp, uint64_t ip);
/* The frames thread tid runs now, innermost first, at most max (*truncated
 * when there were more): read while the thread is stopped (ptrace), they
 * are the sample's. The count (0: no Python frames), -1 when tid has no
 * thread state. */
int pyproc__frames(struct pyproc *pp, pid_t tid, struct pyframe *out, int max, bool *truncated);
/* pyproc__frames' answer for a frame chain that comes back on itself (a
 * corrupt or hostile interpreter state): no stack is believed. */
#define PYFRAMES_CYCLIC (-4)
/* Whether thread tid holds the GIL now (read while it is stopped): 1, 0,
 * or -1 when it cannot be told (no thread state, no GIL kiln reads). The
 * main interpreter's GIL. */
int pyproc__gil_holder(struct pyproc *pp, pid_t tid);
/* Whether the interpreter's thread list was found to come back on itself
 * (its reading stopped there). */
bool pyproc__cyclic_threads(const struct pyproc *pp);
/* The same from frames the eBPF reader copied at the sample (n of them,
 * innermost first; cut: it stopped before the outermost). */
struct kiln_bpf_frame;
int pyproc__frames_of(const struct pyproc *pp, const struct kiln_bpf_frame *raw, int n, bool cut,
		      struct pyframe *out, int max, bool *truncated);
/* Reading pid's memory for collect/pyasync.c: n bytes at addr (false when
 * not all could be read); a str object's text (malloc'd; NULL when addr is
 * not one kiln can read); a type object's tp_name (into out). */
bool pyproc__read(const struct pyproc *pp, uint64_t addr, void *out, size_t n);
char *pyproc__str(struct pyproc *pp, uint64_t addr);
bool pyproc__type_name(const struct pyproc *pp, uint64_t obj, char *out, size_t n);
/* The offsets in use and the runtime's address (for the eBPF reader). */
struct kiln_py_offsets;
const struct kiln_py_offsets *pyproc__offsets(const struct pyproc *pp);
uint64_t pyproc__runtime(const struct pyproc *pp);
/* The names of the code object at code, as the shim sent them while it
 * lived (ring.h PYCODE: raw characters of kind 1, 2 or 4 bytes, and the
 * location table): frames naming it are named from these. 0, 1 when they
 * replace another object's names at that address, or -EINVAL (malformed),
 * -ENOSPC (the process's budget for names is spent). */
int pyproc__define(struct pyproc *pp, uint64_t code, int32_t first, const unsigned char *qual, size_t qlen,
		   unsigned qkind, const unsigned char *file, size_t flen, unsigned fkind, const unsigned char *table,
		   size_t tlen);
/* Name the code object of frame f at its instruction. Strings belong to pp
 * (valid until the next call). false when f's code object is no longer
 * one (freed: its memory no longer reads as a code object, or one with
 * another first line). */
bool pyproc__name(struct pyproc *pp, const struct pyframe *f, const char **func, const char **file, uint32_t *line,
		  uint32_t *def_line);

/* The line of instruction lasti (code units) in a 3.11+ location table, or
 * -1 when it has none. */
int python__line(const unsigned char *table, size_t n, int firstlineno, uint32_t lasti);
/* The same in a 3.10 line table (co_linetable, PEP 626's byte pairs). */
int python__line_310(const unsigned char *table, size_t n, int firstlineno, uint32_t lasti);
/* The offset of the thread id in the C library's struct pthread, or -1. */
int python__pthread_tid_offset(void);

/* Kinds of native frames for python__merge. */
enum { PYK_NATIVE = 0, PYK_EVAL = 1, PYK_ANON = 2, PYK_CALL = 3 };
/* PYK_CALL: 3.10's calling of one Python function from another
 * (pyproc__is_call_path): dropped when it runs between two loop calls, as
 * 3.11+ makes that call inside one loop call; kept (native) anywhere else. */
/* Merge n native frames (kinds[i]) with npy Python frames into order[]:
 * i >= 0 a native frame, -(k+1) Python frame k. A native frame in
 * anonymous memory right above an eval frame (the -X perf trampoline that
 * called it) is dropped, its Python frames standing for it. truncated: the
 * native stack or the Python frames lost their outer part, so Python frames
 * may be left over, or run out (the merged stack then ends at the last
 * loop call that has them: it is truncated anyway). The count, or -1 when
 * native and Python frames do not agree. */
int python__merge(const uint8_t *kinds, int n, const struct pyframe *py, int npy, bool truncated, int32_t *order,
		  int max);

#endif
