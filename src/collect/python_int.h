/* What the CPython reader's files share: python.c reads a process
 * (runtime, threads, frames, the GIL) and merges its frames into native
 * stacks; pycode.c names code objects (strings, location tables, the names
 * the shim sends) within a budget of bytes held. */
#ifndef KILN_COLLECT_PYTHON_INT_H
#define KILN_COLLECT_PYTHON_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include "collect/python.h"
#include "kiln/python.h"
#include "util/util.h"

#define PY_MAX_THREADS 100000
#define PY_MAX_STR 1024      /* characters of a name or file kept */
#define PY_MAX_TABLE (1u << 20)
#define PY_CODE_CACHE 4096

struct pycode {
	uint64_t addr;
	uint64_t name_p, qual_p, file_p, table_p; /* what it held when read */
	int32_t firstlineno;
	char *qualname, *file;
	unsigned char *table;
	size_t ntable;
	size_t held;    /* bytes counted in py_held for it */
	bool transient; /* its location table was not kept (the budget): read at each use */
};

struct pyproc {
	pid_t pid;
	struct kiln_py_offsets o;
	char version[16];
	uint64_t runtime, code_type;
	uint64_t eval_lo, eval_hi;
	uint64_t call_lo[8], call_hi[8]; /* 3.10: the call path's functions (pyproc__is_call_path) */
	int ncalls;
	uint64_t init_shim; /* 3.13+ _Py_InitCleanup: a frame run between a class call and its
			     * __init__, named "__init__" in a file "__init__": never shown */
	int tid_off;           /* 3.10: the tid's offset in a struct pthread (python__pthread_tid_offset) */
	struct u64map tstates; /* native tid -> PyThreadState address */
	uint64_t last_scan;    /* when the thread list was last read (CLOCK_MONOTONIC ns) */
	bool cyclic_threads;   /* the thread list came back on itself */
	struct pycode *codes;  /* a direct-mapped cache by address */
	/* names the shim sent (ring.h PYCODE), by address: they outlive the object */
	struct u64map defs;    /* code address -> index + 1 in defv */
	struct pycode *defv;
	size_t ndefs, cdefs;
};

static inline bool rd(pid_t pid, uint64_t addr, void *out, size_t n)
{
	if (!addr || addr + n < addr || addr >= KILN_PY_ADDR_MASK)
		return false;
	struct iovec l = {out, n}, r = {(void *)(uintptr_t)addr, n};
	return process_vm_readv(pid, &l, 1, &r, 1, 0) == (ssize_t)n;
}

static inline bool rd64(pid_t pid, uint64_t addr, uint64_t *v)
{
	return rd(pid, addr, v, sizeof(*v));
}

/* pycode.c */
void pycode_release(struct pycode *c); /* its names and table freed, the budget given back */
char *pycode_read_str(struct pyproc *pp, uint64_t addr); /* a str object as UTF-8 (bounded), NULL if not one */

#endif
