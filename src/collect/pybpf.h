/* Python frames caught at the instant of a CPU sample, by the eBPF program
 * bpf/pyframes.bpf.c set on kiln's perf events (root, or CAP_BPF with
 * CAP_PERFMON). The program writes one record per sample of a registered
 * process into a BPF ring; pybpf__take() pairs a perf sample with its
 * record by thread, interrupted instruction and time.
 *
 *   overflow ─► kiln_pyframes (frames now) ─► BPF ring ─┐
 *            └► perf sample (regs, stack copy) ─► perf ring ─┴─► pybpf__take ─► merge */
#ifndef KILN_COLLECT_PYBPF_H
#define KILN_COLLECT_PYBPF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pybpf;
struct kiln_py_offsets;
struct kiln_bpf_sample;

/* The loaded program, or NULL with a one-line reason in why (kiln built
 * without libbpf, not privileged, a kernel without BPF ring buffers,
 * KILN_NO_BPF=1 in the environment). */
struct pybpf *pybpf__open(char *why, size_t n);
void pybpf__close(struct pybpf *b);
/* Run the program on the overflows of perf event fd (inherited events
 * inherit it). 0 or -errno. */
int pybpf__attach(struct pybpf *b, int perf_fd);
/* Read pid's frames from now on: its runtime at runtime, offsets o. 0 or -errno. */
int pybpf__add(struct pybpf *b, uint32_t pid, const struct kiln_py_offsets *o, uint64_t runtime);
void pybpf__remove(struct pybpf *b, uint32_t pid);
/* The record of tid's sample taken at time (CLOCK_MONOTONIC ns) at ip, or
 * NULL when the program wrote none for it (its ring was full, or the
 * process was registered after the sample). Valid until the next call. */
const struct kiln_bpf_sample *pybpf__take(struct pybpf *b, uint32_t tid, uint64_t time, uint64_t ip);

struct pybpf_stats {
	uint64_t runs;     /* program runs on samples of registered processes */
	uint64_t dropped;  /* records its ring had no room for */
	uint64_t ns;       /* time spent in the program */
	uint64_t orphans;  /* records no sample claimed (the sample was lost) */
};
void pybpf__stats(struct pybpf *b, struct pybpf_stats *st);

#endif
