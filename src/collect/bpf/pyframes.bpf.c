/* The eBPF Python frame reader: a BPF_PROG_TYPE_PERF_EVENT program set on
 * kiln's sampling events. It runs on each sample's overflow, in the sampled
 * thread, before the kernel writes the sample: for a process the recorder
 * said runs a CPython (kiln_pycfg), it finds the thread's PyThreadState and
 * copies its chain of interpreter frames (code object, instruction, owner)
 * into a record. The frames are those of the instant of the sample: nothing
 * is read later, so nothing can have moved on.
 *
 * Everything read is the target's memory, read with bpf_probe_read_user:
 * a bad pointer is a failed read, never a fault; every walk is bounded
 * (bpf_loop); an offset past the frame bytes read is refused. The program
 * always returns 1: the sample is written whatever it found. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "collect/bpf/pyframes.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct kiln_bpf_pycfg);
} kiln_pycfg SEC(".maps");

/* tid -> its PyThreadState, checked against native_thread_id at each use */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u64);
} kiln_tstates SEC(".maps");

struct scratch {
	struct kiln_bpf_sample s;
	__u8 raw[KILN_BPF_FRAME_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} kiln_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} kiln_pyout SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KILN_BPF_NSTATS);
	__type(key, __u32);
	__type(value, __u64);
} kiln_stats SEC(".maps");

/* struct bpf_perf_event_data on x86-64: pt_regs, then period and address */
struct perf_ctx {
	__u64 regs[21]; /* r15 … ip (16) cs flags sp ss */
	__u64 sample_period;
	__u64 addr;
};

static __always_inline int rd64(__u64 *out, __u64 addr)
{
	return bpf_probe_read_user(out, sizeof(*out), (const void *)addr);
}

static __always_inline void stat_add(__u32 k, __u64 v)
{
	__u64 *p = bpf_map_lookup_elem(&kiln_stats, &k);
	if (p)
		*p += v;
}

struct walk_ts {
	struct kiln_bpf_pycfg c;
	__u64 ts, found;
	__u32 tid;
};

/* The native id of ts's thread: native_thread_id (3.11+), or the tid in the
 * struct pthread its thread_id names (3.10). 0 when it cannot be read. */
static __always_inline __u64 ts_tid(const struct kiln_bpf_pycfg *c, __u64 ts)
{
	__u64 t = 0;
	if (c->ts_native_tid != KILN_BPF_NONE) {
		if (rd64(&t, ts + c->ts_native_tid))
			return 0;
		return t;
	}
	__u64 th = 0;
	__s32 tid = 0;
	if (rd64(&th, ts + c->ts_thread_id) || !th ||
	    bpf_probe_read_user(&tid, sizeof(tid), (const void *)(th + c->pthread_tid)))
		return 0;
	return tid > 0 ? (__u64)tid : 0;
}

static long ts_step(__u32 i, void *ctx)
{
	struct walk_ts *w = ctx;
	if (!w->ts)
		return 1;
	__u64 t = ts_tid(&w->c, w->ts);
	if (!t && w->c.ts_native_tid != KILN_BPF_NONE)
		return 1;
	if (t == w->tid) {
		w->found = w->ts;
		return 1;
	}
	if (rd64(&w->ts, w->ts + w->c.ts_next))
		return 1;
	return 0;
}

struct walk_fr {
	struct kiln_bpf_pycfg c;
	__u64 f;
	__s32 n;
	__u32 flags;
};

static long fr_step(__u32 i, void *ctx)
{
	struct walk_fr *w = ctx;
	__u32 zero = 0;
	if (!w->f)
		return 1;
	if (i >= KILN_BPF_MAX_FRAMES) {
		w->flags |= KILN_BPF_TRUNCATED;
		return 1;
	}
	struct scratch *sc = bpf_map_lookup_elem(&kiln_scratch, &zero);
	if (!sc)
		return 1;
	__u32 sz = w->c.fr_size, oc = w->c.fr_code, op = w->c.fr_previous, oi = w->c.fr_instr,
	      oo = w->c.fr_owner, oe = w->c.fr_is_entry;
	if (sz < 16 || sz > KILN_BPF_FRAME_MAX || oc > KILN_BPF_FRAME_MAX - 8 || op > KILN_BPF_FRAME_MAX - 8 ||
	    oi > KILN_BPF_FRAME_MAX - 8 || oo > KILN_BPF_FRAME_MAX - 1) {
		w->flags |= KILN_BPF_READ_FAULT;
		return 1;
	}
	if (bpf_probe_read_user(sc->raw, sz, (const void *)w->f)) {
		w->flags |= KILN_BPF_READ_FAULT;
		return 1;
	}
	__u64 idx = i;
	asm volatile("" : "+r"(idx)); /* keep the mask: the verifier needs it */
	idx &= KILN_BPF_MAX_FRAMES - 1;
	struct kiln_bpf_frame *fr = &sc->s.f[idx];
	__builtin_memcpy(&fr->code, sc->raw + oc, 8);
	__builtin_memcpy(&fr->instr, sc->raw + oi, 8);
	fr->first = 0;
	if (fr->code)
		bpf_probe_read_user(&fr->first, sizeof(fr->first), (const void *)(fr->code + w->c.co_firstlineno));
	fr->owner = sc->raw[oo];
	fr->is_entry = oe <= KILN_BPF_FRAME_MAX - 1 ? sc->raw[oe] : 0;
	__builtin_memcpy(&w->f, sc->raw + op, 8);
	w->n = (__s32)i + 1;
	return 0;
}

SEC("perf_event")
int kiln_pyframes(struct perf_ctx *ctx)
{
	__u64 pt = bpf_get_current_pid_tgid();
	__u32 pid = pt >> 32, tid = (__u32)pt, zero = 0;
	struct kiln_bpf_pycfg *cfg = bpf_map_lookup_elem(&kiln_pycfg, &pid);
	if (!cfg)
		return 1;
	__u64 t0 = bpf_ktime_get_ns();
	struct scratch *sc = bpf_map_lookup_elem(&kiln_scratch, &zero);
	if (!sc)
		return 1;
	struct kiln_bpf_sample *s = &sc->s;
	s->time = t0;
	s->ip = ctx->regs[16];
	s->pid = pid;
	s->tid = tid;
	s->n = 0;
	s->flags = 0;

	/* the thread's state: the one it had last time, if it is still its */
	struct walk_ts wt = {.c = *cfg, .tid = tid};
	__u64 *cached = bpf_map_lookup_elem(&kiln_tstates, &tid);
	if (cached) {
		__u64 ts = *cached;
		if (ts_tid(&wt.c, ts) == tid)
			wt.found = ts;
	}
	if (!wt.found) {
		__u64 interp = 0;
		rd64(&interp, wt.c.runtime + wt.c.rt_interp_head);
		for (int k = 0; k < KILN_BPF_MAX_INTERPS && interp && !wt.found; k++) {
			wt.ts = 0;
			rd64(&wt.ts, interp + wt.c.is_threads_head);
			bpf_loop(KILN_BPF_MAX_THREADS, ts_step, &wt, 0);
			if (rd64(&interp, interp + wt.c.is_next))
				break;
		}
		if (wt.found)
			bpf_map_update_elem(&kiln_tstates, &tid, &wt.found, BPF_ANY);
	}
	if (!wt.found) {
		s->n = KILN_BPF_NO_TSTATE;
		goto emit;
	}

	struct walk_fr wf = {.c = wt.c};
	if (wf.c.ts_current_frame != KILN_BPF_NONE) {
		if (rd64(&wf.f, wt.found + wf.c.ts_current_frame)) {
			s->n = KILN_BPF_FAULT;
			goto emit;
		}
	} else {
		__u64 cf = 0;
		if (rd64(&cf, wt.found + wf.c.ts_cframe)) {
			s->n = KILN_BPF_FAULT;
			goto emit;
		}
		if (cf && rd64(&wf.f, cf + wf.c.cf_current)) {
			s->n = KILN_BPF_FAULT;
			goto emit;
		}
	}
	bpf_loop(KILN_BPF_MAX_FRAMES + 1, fr_step, &wf, 0);
	s->n = wf.n;
	s->flags = wf.flags;

emit:;
	__s32 n = s->n;
	if (n < 0)
		n = 0;
	if (n > KILN_BPF_MAX_FRAMES)
		n = KILN_BPF_MAX_FRAMES;
	__u64 size = KILN_BPF_SAMPLE_HEAD + (__u64)n * sizeof(struct kiln_bpf_frame);
	if (size > sizeof(*s))
		size = sizeof(*s);
	/* no wakeup: the recorder drains this ring with the perf rings */
	if (bpf_ringbuf_output(&kiln_pyout, s, size, BPF_RB_NO_WAKEUP))
		stat_add(KILN_BPF_STAT_DROPPED, 1);
	stat_add(KILN_BPF_STAT_RUNS, 1);
	stat_add(KILN_BPF_STAT_NS, bpf_ktime_get_ns() - t0);
	return 1;
}
