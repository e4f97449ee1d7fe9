/* What the eBPF frame reader (pyframes.bpf.c) and the recorder (pybpf.c)
 * share: the per-process configuration the recorder writes into a map, and
 * the record the program writes for each sample of a Python process. Only
 * <linux/types.h> types: the same header is compiled for the BPF target.
 *
 * The program runs on the perf event's overflow, in the sampled thread,
 * before the kernel writes the sample: it walks the thread's interpreter
 * frames at that instant. The recorder pairs a record with its sample by
 * thread, instruction pointer and time (the record's time is taken first,
 * on the same clock as the sample's: CLOCK_MONOTONIC). */
#ifndef KILN_COLLECT_BPF_PYFRAMES_H
#define KILN_COLLECT_BPF_PYFRAMES_H

#include <linux/types.h>

#define KILN_BPF_MAX_FRAMES 256   /* frames in one record (KILN_MAX_DEPTH) */
#define KILN_BPF_MAX_THREADS 1024 /* thread states walked to find a thread's */
#define KILN_BPF_MAX_INTERPS 8
#define KILN_BPF_FRAME_MAX 128    /* bytes of one _PyInterpreterFrame read */
#define KILN_BPF_NONE 0xffffu

/* The offsets of include/kiln/python.h the program needs, per process. */
struct kiln_bpf_pycfg {
	__u64 runtime; /* &_PyRuntime in the process */
	__u16 rt_interp_head, is_next, is_threads_head;
	__u16 ts_next, ts_native_tid, ts_cframe, cf_current, ts_current_frame;
	__u16 fr_code, fr_previous, fr_instr, fr_owner, fr_is_entry, fr_size;
	__u16 co_firstlineno;
	__u16 ts_thread_id; /* 3.10 (ts_native_tid KILN_BPF_NONE): the thread's pthread_t */
	__u16 pthread_tid;  /* 3.10: the tid's offset in the struct pthread it points at */
	__u16 pad[3];
};

/* One frame as read: the rest is decoded by the recorder (kiln/python.h). */
struct kiln_bpf_frame {
	__u64 code;
	__u64 instr;
	__s32 first; /* the code object's co_firstlineno then: a code object freed and
		      * another made at its address before it is named is told apart */
	__u8 owner;
	__u8 is_entry;
	__u8 pad[2];
};

/* n: frames, or one of these */
#define KILN_BPF_NO_TSTATE (-1) /* the thread has no thread state (not a Python thread) */
#define KILN_BPF_FAULT (-2)     /* the thread state could not be read */

#define KILN_BPF_TRUNCATED 1u   /* more frames than KILN_BPF_MAX_FRAMES (or a cycle) */
#define KILN_BPF_READ_FAULT 2u  /* a frame could not be read: the chain is cut there */

struct kiln_bpf_sample {
	__u64 time; /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u64 ip;   /* the interrupted instruction, as the sample's PERF_SAMPLE_IP */
	__u32 pid, tid;
	__s32 n;
	__u32 flags;
	struct kiln_bpf_frame f[KILN_BPF_MAX_FRAMES];
};

#define KILN_BPF_SAMPLE_HEAD 32 /* bytes before f[] */

/* stats map slots (per CPU) */
enum { KILN_BPF_STAT_RUNS, KILN_BPF_STAT_DROPPED, KILN_BPF_STAT_NS, KILN_BPF_NSTATS };

#endif
