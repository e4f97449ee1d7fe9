/* What kiln record's files share: its options, the recording session's
 * state, and the steps cmd_record.c runs in order.
 *   cmd_record.c      options, checks on the target and the output, the
 *                     order of the steps, the exit status
 *   record_start.c    launching a program or attaching to a process: the
 *                     sampler, the shim, the heap attach
 *   record_session.c  the loop (rings, snapshots, flushes, -d, signals),
 *                     the end (leaks, exit status, detach) and its summary */
#ifndef KILN_CLI_RECORD_H
#define KILN_CLI_RECORD_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include "collect/channel.h"
#include "collect/heapattach.h"
#include "collect/heapsrc.h"
#include "collect/recorder.h"
#include "collect/sampler.h"
#include "stream/stream.h"
#include "util/safefile.h"

/* The subcommand its errors are said under: "record", or "dump" while kiln
 * dump records its one instant (cmd_dump.c) */
extern const char *record_cmd;
#define CMD record_cmd

/* The signal that ends the recording, and whether the terminal sent it to
 * the program too (cmd_record.c's handler sets them) */
extern volatile sig_atomic_t record_got_signal, record_got_from_tty;

struct record_opts {
	const char *output;
	long freq;
	bool heap, cpu, wall, follow, quiet, freq_set, no_compress, gil;
	double duration, snapshot_every;
	const char *py_alloc; /* --python-allocator: NULL leaves the program's own choice */
	bool py_domains;      /* trace Python's allocator domains (--no-trace-python-allocators: off) */
	uint64_t heap_sample; /* --heap-sample: mean bytes between sampled allocations; 0: every one */
	long pid;
	long stack_size;
	char **argv;
};

struct rec {
	struct record_opts o;
	struct recorder *r;
	struct stream_writer *w;
	struct safe_out out;
	bool out_ready;       /* the output is in place (the program runs) */
	bool out_waiting;     /* a FIFO with no reader yet: records wait in memory */
	const struct sampler_ops *ops;
	struct sampler *s;
	struct heapsrc *h;
	struct channel *ch;
	struct channel_ops chops;
	unsigned snapshots;
	pid_t child;
	int exe_cause; /* why the launched program cannot carry the shim, or -1 */
	bool stdout_out; /* -o -: the profile is kiln's stdout */
	bool warned_lost;
	size_t out_bytes; /* written when the writer was freed */
	struct heapattach ha; /* --heap -p: the shim loaded into the running process */
	bool heap_attached;
	double cpu_at_attach; /* -p with perf_event CPU sampling: the process's CPU seconds then, < 0 unknown */
};

/* cmd_record.c */
bool record_ptrace_sampling(const struct record_opts *o); /* --wall or --gil: the ptrace sampler */

/* record_start.c: each prints its own error and returns an exit status
 * (KILN_EXIT_*), 0 when it worked */
int record_launch(struct rec *st); /* fork, samplers on the child, exec */
int record_heap_attach(struct rec *st); /* --heap -p: the shim into the running process */
int record_open_sampler(struct rec *st, pid_t pid, bool launch); /* perf_event, or ptrace */
void record_attach_error(long pid, int rc, const struct sampler_ops *ops); /* why an attach failed, one line */
bool record_is_kernel_thread(long pid);
long record_thread_group(long tid); /* the process a thread id belongs to; -1: unknown */
bool record_is_zombie(long pid);
double record_proc_cpu(long pid); /* CPU seconds the process has had (all its threads), -1 unknown */

/* record_session.c */
int record_snapshot_bytes(void *ctx, uint32_t pid, struct buf *out); /* channel callbacks */
void record_on_ring(void *ctx, const struct kiln_msg *m, int fd, int page_fd);
void record_on_loss(void *ctx, const struct kiln_msg *m);
int record_output_ready(struct rec *st); /* the output in place (a FIFO: once a reader came) */
int record_wait_status(int status);      /* a wait status as an exit code: 128+N for a signal */
/* Until the program ends, -d passes or a signal comes; 0, or an exit status */
int record_loop(struct rec *st, int *status, bool *child_done);
/* Leaks, exit status, END record, the summary line; kiln's exit status */
int record_finish(struct rec *st, int status, bool child_done, uint64_t t0);
void record_cleanup(struct rec *st);

#endif
