/* CPU sampler backends behind one set of operations (perf's unwinders are
 * chosen the same way): perf_event first, ptrace where perf_event is refused
 * and for wall-clock sampling. A sampler feeds the recorder's tables. */
#ifndef KILN_COLLECT_SAMPLER_H
#define KILN_COLLECT_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct recorder;
struct sampler;

struct sampler_opts {
	pid_t pid;           /* the launched child, or the process attached to */
	bool launch;         /* enable at exec of the child; follow forks */
	bool follow;         /* follow forked children */
	bool cpu;            /* sample; false: only track maps and tasks */
	bool wall;           /* wall-clock: sleeping threads too (ptrace) */
	bool gil;            /* keep only samples of a CPython thread holding the GIL (ptrace) */
	int freq;            /* Hz per thread */
	uint32_t stack_size; /* bytes of user stack copied per sample */
	bool python;         /* the program is known to be a Python: registered with the
			      * frame reader as soon as it maps its interpreter */
};

struct sampler_ops {
	const char *name;
	/* 0 or -errno (-EACCES/-EPERM: the caller may try another backend). */
	int (*open)(struct sampler **out, const struct sampler_opts *o, struct recorder *r);
	int (*start)(struct sampler *s);
	/* Wait up to timeout_ms for data and feed the recorder. 0 or -errno. */
	int (*read)(struct sampler *s, int timeout_ms);
	int (*stop)(struct sampler *s);
	/* What sampling cost and lost, into the recorder's META (before its
	 * final flush). */
	void (*report)(struct sampler *s);
	void (*close)(struct sampler *s);
};

extern const struct sampler_ops perf_sampler_ops;
extern const struct sampler_ops ptrace_sampler_ops;

#endif
