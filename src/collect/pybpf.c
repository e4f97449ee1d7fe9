/* Loading the eBPF frame reader and pairing its records with perf samples
 * (see pybpf.h). The program's records come in per-CPU order through one
 * BPF ring; a thread's records are kept in a queue of their own until its
 * samples claim them. A record is written before its sample, on the same
 * CPU, by the same overflow: the sample's record is the newest one of its
 * thread at or before the sample's time whose interrupted instruction is
 * the sample's. Older records of that thread that no sample claimed belong
 * to samples the kernel dropped (counted as orphans). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "collect/bpf/pyframes.h"
#include "collect/pybpf.h"
#include "collect/python.h"
#include "kiln/python.h"
#include "util/util.h"

#ifdef KILN_HAVE_BPF
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/perf_event.h>
#include <sys/ioctl.h>

extern const unsigned char kiln_pyframes_bpf[];
extern const size_t kiln_pyframes_bpf_len;

#define QUEUE_MAX 16384              /* records kept for one thread */
#define HELD_MAX (64u << 20)         /* bytes of records kept in all: records of threads whose
				      * samples are never claimed (a --no-follow child, a pid
				      * reused after its process ended) cannot grow without bound */
#define MATCH_WINDOW_NS 1000000ull  /* a record further from its sample's time is not its */
/* A thread's samples may sit in several CPUs' perf rings (it migrated),
 * drained one after the other: a record stays this long behind the latest
 * sample of its thread, for a sample of an earlier time in a ring not yet
 * drained. */
#define KEEP_NS 1000000000ull

struct tq {
	struct kiln_bpf_sample **v;
	size_t head, n, cap; /* a ring of n records from head */
};

struct pybpf {
	struct bpf_object *obj;
	int prog_fd, cfg_fd, stats_fd;
	struct ring_buffer *rb;
	struct u64map tids; /* tid -> index + 1 in qs */
	struct tq *qs;
	size_t nqs, cqs;
	struct kiln_bpf_sample *taken; /* the record last handed out */
	uint64_t orphans;
	size_t held;                   /* bytes of queued records */
};

static size_t rec_bytes(const struct kiln_bpf_sample *s)
{
	return KILN_BPF_SAMPLE_HEAD + (size_t)(s->n > 0 ? s->n : 0) * sizeof(struct kiln_bpf_frame);
}

static int quiet_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	(void)level;
	(void)fmt;
	(void)ap;
	return 0;
}

static struct tq *queue_of(struct pybpf *b, uint32_t tid, bool create)
{
	struct u64map_ent *e = u64map__find(&b->tids, tid);
	if (e)
		return &b->qs[e->v1 - 1];
	if (!create)
		return NULL;
	ARR_GROW(b->qs, b->cqs, b->nqs + 1);
	struct tq *q = &b->qs[b->nqs++];
	memset(q, 0, sizeof(*q));
	u64map__upsert(&b->tids, tid, NULL)->v1 = b->nqs;
	return q;
}

static struct kiln_bpf_sample *q_at(struct tq *q, size_t i)
{
	return q->v[(q->head + i) % q->cap];
}

/* Drop the oldest record (NULL: one taken already). */
static void q_pop(struct pybpf *b, struct tq *q, bool orphan)
{
	struct kiln_bpf_sample *s = q->v[q->head];
	if (s) {
		b->held -= rec_bytes(s);
		free(s);
		if (orphan)
			b->orphans++;
	}
	q->head = (q->head + 1) % q->cap;
	q->n--;
}

/* Drop taken records at the front, and records older than before. */
static void q_trim(struct pybpf *b, struct tq *q, uint64_t before)
{
	while (q->n && (!q_at(q, 0) || q_at(q, 0)->time < before))
		q_pop(b, q, true);
}

static int on_record(void *ctx, void *data, size_t size)
{
	struct pybpf *b = ctx;
	if (size < KILN_BPF_SAMPLE_HEAD)
		return 0;
	struct kiln_bpf_sample h;
	memcpy(&h, data, KILN_BPF_SAMPLE_HEAD);
	int32_t n = h.n < 0 ? 0 : h.n;
	if ((size_t)n > KILN_BPF_MAX_FRAMES || KILN_BPF_SAMPLE_HEAD + (size_t)n * sizeof(struct kiln_bpf_frame) > size)
		return 0;
	size_t need = KILN_BPF_SAMPLE_HEAD + (size_t)n * sizeof(struct kiln_bpf_frame);
	if (b->held + need > HELD_MAX) {
		b->orphans++; /* its sample, if one claims it, is counted as not caught */
		return 0;
	}
	struct kiln_bpf_sample *s = xmalloc(need);
	b->held += need;
	memcpy(s, data, need);
	struct tq *q = queue_of(b, h.tid, true);
	if (q->n == q->cap) {
		if (q->cap >= QUEUE_MAX) {
			q_pop(b, q, true);
		} else {
			size_t nc = q->cap ? q->cap * 2 : 16;
			struct kiln_bpf_sample **v = xmalloc(nc * sizeof(*v));
			for (size_t i = 0; i < q->n; i++)
				v[i] = q_at(q, i);
			free(q->v);
			q->v = v;
			q->head = 0;
			q->cap = nc;
		}
	}
	q->v[(q->head + q->n) % q->cap] = s;
	q->n++;
	return 0;
}

struct pybpf *pybpf__open(char *why, size_t n)
{
	why[0] = 0;
	const char *off = getenv("KILN_NO_BPF");
	if (off && *off == '1') {
		snprintf(why, n, "eBPF turned off (KILN_NO_BPF=1)");
		return NULL;
	}
	libbpf_set_print(quiet_print);
	struct pybpf *b = xcalloc(1, sizeof(*b));
	u64map__init(&b->tids);
	b->obj = bpf_object__open_mem(kiln_pyframes_bpf, kiln_pyframes_bpf_len, NULL);
	int err = b->obj ? bpf_object__load(b->obj) : -errno;
	if (err) {
		snprintf(why, n, "the eBPF frame reader could not be loaded (%s)",
			 err == -EPERM || err == -EACCES ? "needs root, or CAP_BPF and CAP_PERFMON" : strerror(-err));
		pybpf__close(b);
		return NULL;
	}
	struct bpf_program *p = bpf_object__find_program_by_name(b->obj, "kiln_pyframes");
	struct bpf_map *cfg = bpf_object__find_map_by_name(b->obj, "kiln_pycfg");
	struct bpf_map *out = bpf_object__find_map_by_name(b->obj, "kiln_pyout");
	struct bpf_map *stats = bpf_object__find_map_by_name(b->obj, "kiln_stats");
	if (!p || !cfg || !out || !stats) {
		snprintf(why, n, "the eBPF frame reader is incomplete");
		pybpf__close(b);
		return NULL;
	}
	b->prog_fd = bpf_program__fd(p);
	b->cfg_fd = bpf_map__fd(cfg);
	b->stats_fd = bpf_map__fd(stats);
	b->rb = ring_buffer__new(bpf_map__fd(out), on_record, b, NULL);
	if (!b->rb) {
		snprintf(why, n, "the eBPF frame reader's ring could not be mapped (%s)", strerror(errno));
		pybpf__close(b);
		return NULL;
	}
	return b;
}

void pybpf__close(struct pybpf *b)
{
	if (!b)
		return;
	if (b->rb)
		ring_buffer__free(b->rb);
	if (b->obj)
		bpf_object__close(b->obj);
	for (size_t i = 0; i < b->nqs; i++) {
		while (b->qs[i].n)
			q_pop(b, &b->qs[i], false);
		free(b->qs[i].v);
	}
	free(b->qs);
	free(b->taken);
	u64map__release(&b->tids);
	free(b);
}

int pybpf__attach(struct pybpf *b, int perf_fd)
{
	return ioctl(perf_fd, PERF_EVENT_IOC_SET_BPF, b->prog_fd) < 0 ? -errno : 0;
}

int pybpf__add(struct pybpf *b, uint32_t pid, const struct kiln_py_offsets *o, uint64_t runtime)
{
	struct kiln_bpf_pycfg c = {
		.runtime = runtime, .rt_interp_head = o->rt_interp_head, .is_next = o->is_next,
		.is_threads_head = o->is_threads_head, .ts_next = o->ts_next, .ts_native_tid = o->ts_native_tid,
		.ts_cframe = o->ts_cframe, .cf_current = o->cf_current, .ts_current_frame = o->ts_current_frame,
		.fr_code = o->fr_code, .fr_previous = o->fr_previous, .fr_instr = o->fr_instr, .fr_owner = o->fr_owner,
		.fr_is_entry = o->fr_is_entry, .fr_size = o->fr_size, .co_firstlineno = o->co_firstlineno,
		.ts_thread_id = o->ts_thread_id,
	};
	if (o->ts_native_tid == KILN_PY_NONE) {
		int off = python__pthread_tid_offset();
		if (off < 0 || off > 0xffff)
			return -ENOTSUP;
		c.pthread_tid = (uint16_t)off;
	}
	return bpf_map_update_elem(b->cfg_fd, &pid, &c, BPF_ANY) < 0 ? -errno : 0;
}

void pybpf__remove(struct pybpf *b, uint32_t pid)
{
	bpf_map_delete_elem(b->cfg_fd, &pid);
}

/* The index of tid's record for (time, ip) in q, or -1: the one with the
 * sample's instruction pointer nearest in time, within MATCH_WINDOW_NS
 * either side (the kernel stamps the sample just before or just after the
 * program runs, a few microseconds apart). */
static long find(struct tq *q, uint64_t time, uint64_t ip)
{
	long best = -1;
	uint64_t bestd = UINT64_MAX;
	/* from the newest back: the sample is most often among the last */
	for (size_t i = q->n; i-- > 0;) {
		struct kiln_bpf_sample *s = q_at(q, i);
		if (!s)
			continue;
		if (s->time + MATCH_WINDOW_NS < time)
			break;
		uint64_t d = s->time > time ? s->time - time : time - s->time;
		if (s->ip == ip && d <= MATCH_WINDOW_NS && d < bestd) {
			best = (long)i;
			bestd = d;
		}
	}
	return best;
}

const struct kiln_bpf_sample *pybpf__take(struct pybpf *b, uint32_t tid, uint64_t time, uint64_t ip)
{
	free(b->taken);
	b->taken = NULL;
	struct tq *q = queue_of(b, tid, false);
	long at = q ? find(q, time, ip) : -1;
	if (at < 0) {
		/* written after the ring was last drained */
		ring_buffer__consume(b->rb);
		q = queue_of(b, tid, false);
		at = q ? find(q, time, ip) : -1;
	}
	if (!q)
		return NULL;
	uint64_t before = time > KEEP_NS ? time - KEEP_NS : 0;
	if (at < 0) {
		q_trim(b, q, before);
		return NULL;
	}
	/* taken out where it is; earlier ones wait for their samples */
	size_t slot = (q->head + (size_t)at) % q->cap;
	b->taken = q->v[slot];
	q->v[slot] = NULL;
	b->held -= rec_bytes(b->taken);
	q_trim(b, q, before);
	return b->taken;
}

void pybpf__stats(struct pybpf *b, struct pybpf_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->orphans = b->orphans;
	int ncpu = libbpf_num_possible_cpus();
	if (ncpu <= 0)
		return;
	uint64_t *v = xcalloc((size_t)ncpu, sizeof(*v));
	uint64_t *out[KILN_BPF_NSTATS] = {&st->runs, &st->dropped, &st->ns};
	for (uint32_t k = 0; k < KILN_BPF_NSTATS; k++) {
		if (bpf_map_lookup_elem(b->stats_fd, &k, v) < 0)
			continue;
		for (int c = 0; c < ncpu; c++)
			*out[k] += v[c];
	}
	free(v);
}

#else /* built without libbpf */

struct pybpf *pybpf__open(char *why, size_t n)
{
	snprintf(why, n, "this kiln was built without libbpf: no eBPF frame reader");
	return NULL;
}
void pybpf__close(struct pybpf *b)
{
	(void)b;
}
int pybpf__attach(struct pybpf *b, int perf_fd)
{
	return -ENOSYS;
}
int pybpf__add(struct pybpf *b, uint32_t pid, const struct kiln_py_offsets *o, uint64_t runtime)
{
	return -ENOSYS;
}
void pybpf__remove(struct pybpf *b, uint32_t pid)
{
}
const struct kiln_bpf_sample *pybpf__take(struct pybpf *b, uint32_t tid, uint64_t time, uint64_t ip)
{
	return NULL;
}
void pybpf__stats(struct pybpf *b, struct pybpf_stats *st)
{
	memset(st, 0, sizeof(*st));
}
#endif
