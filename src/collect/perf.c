/* The perf_event sampler backend. One software cpu-clock event per CPU,
 * attached to the launched child (inherit: its threads and forked children
 * too, enabled at its exec) or to each thread of an attached process, with
 * user registers and a copy of the user stack in every sample. Samples are
 * unwound here as they arrive and only interned stacks are kept: nothing
 * like perf.data's raw stack copies reaches the profile file.
 *
 *   per-CPU ring ──► sample ──unwind──► ips ──► recorder__stack/count
 *                └─► MMAP2/COMM/FORK/EXIT ──► recorder maps and tasks */
#include <dirent.h>
#include <errno.h>
#include <linux/perf_event.h>
#include <poll.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "collect/bpf/pyframes.h"
#include "collect/pybpf.h"
#include "collect/python.h"
#include "collect/recorder.h"
#include "collect/sampler.h"
#include "collect/unwind.h"
#include "kiln/kiln.h"
#include "util/util.h"

/* x86-64 perf register numbers */
enum { R_AX, R_BX, R_CX, R_DX, R_SI, R_DI, R_BP, R_SP, R_IP, R_FLAGS, R_R8 = 16, R_R9, R_R10, R_R11, R_R12, R_R13,
       R_R14, R_R15 };
#define REGS_MASK (((1ull << 9) - 1) | (0xffull << 16))
#define NREGS 17

#define RING_PAGES 2048 /* 8 MiB of data per CPU: ~250 samples of 32 KiB */

struct ring {
	int fd;
	void *base;
	size_t size; /* data area */
	int cpu;
};

struct sampler {
	struct sampler_opts o;
	struct recorder *r;
	struct ring *rings;
	size_t nrings;
	int *fds; /* all events, including those redirected into a ring */
	size_t nfds, cfds;
	unsigned char *scratch;
	size_t scratch_size;
	uint64_t regs_mask;
	bool kernel; /* samples carry the kernel part of the stack (PERF_SAMPLE_CALLCHAIN) */
	bool test_drop; /* KILN_TEST_DROP_SAMPLES=1: every sample ignored, as a kernel that delivers
			 * none (the tests of kiln record's check of samples against CPU time) */
	struct pybpf *bpf;    /* Python frames caught at each sample, or NULL */
	struct u64map bpf_pids; /* pid -> the pyproc it was registered with */
	char bpf_why[160];    /* why there is no bpf */
	uint64_t opened_ns;   /* when it was opened */
};

static long perf_open(struct perf_event_attr *a, pid_t pid, int cpu, int group, unsigned long flags)
{
	return syscall(SYS_perf_event_open, a, pid, cpu, group, flags);
}

static void fill_attr(struct perf_event_attr *a, const struct sampler_opts *o, bool exclude_kernel)
{
	memset(a, 0, sizeof(*a));
	a->size = sizeof(*a);
	a->type = PERF_TYPE_SOFTWARE;
	if (o->cpu) {
		a->config = PERF_COUNT_SW_CPU_CLOCK;
		a->freq = 1;
		a->sample_freq = (uint64_t)o->freq;
		a->sample_type = PERF_SAMPLE_IP | PERF_SAMPLE_TID | PERF_SAMPLE_TIME | PERF_SAMPLE_CPU |
				 PERF_SAMPLE_PERIOD | PERF_SAMPLE_REGS_USER | PERF_SAMPLE_STACK_USER;
		a->sample_regs_user = REGS_MASK;
		a->sample_stack_user = o->stack_size;
		if (!exclude_kernel) {
			/* where the kernel allows it, its stack too, as perf does (the
			 * user part is unwound from the stack copy) */
			a->sample_type |= PERF_SAMPLE_CALLCHAIN;
			a->exclude_callchain_user = 1;
		}
	} else {
		a->config = PERF_COUNT_SW_DUMMY;
		a->sample_type = PERF_SAMPLE_TID | PERF_SAMPLE_TIME;
	}
	a->exclude_kernel = exclude_kernel;
	a->exclude_hv = 1;
	a->mmap = 1;
	a->mmap2 = 1;
	a->comm = 1;
	a->comm_exec = 1;
	a->task = 1;
	a->sample_id_all = 1;
	a->inherit = 1;
	a->use_clockid = 1; /* sample times comparable with now (Python frames, read late, are refused) */
	a->clockid = CLOCK_MONOTONIC;
	a->watermark = 1;
	a->wakeup_watermark = RING_PAGES * 4096 / 4;
	if (o->launch) {
		a->disabled = 1;
		a->enable_on_exec = 1;
	}
}

static int ncpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_CONF);
	return n > 0 ? (int)n : 1;
}

static void add_fd(struct sampler *s, int fd)
{
	ARR_GROW(s->fds, s->cfds, s->nfds + 1);
	s->fds[s->nfds++] = fd;
}

/* Open one event for (tid, cpu); the first per CPU gets a ring, the rest
 * write into it. */
static int open_one(struct sampler *s, pid_t tid, int cpu, bool *exclude_kernel)
{
	struct perf_event_attr a;
	long fd;
	for (;;) {
		fill_attr(&a, &s->o, *exclude_kernel);
		fd = perf_open(&a, tid, cpu, -1, PERF_FLAG_FD_CLOEXEC);
		if (fd >= 0 || *exclude_kernel || (errno != EACCES && errno != EPERM))
			break;
		*exclude_kernel = true; /* unprivileged: user space only */
	}
	if (fd < 0)
		return -errno;
	add_fd(s, (int)fd);
	if (s->bpf && pybpf__attach(s->bpf, (int)fd) < 0) {
		snprintf(s->bpf_why, sizeof(s->bpf_why), "the eBPF frame reader could not be set on the sampling events (%s)",
			 strerror(errno));
		pybpf__close(s->bpf);
		s->bpf = NULL;
	}
	for (size_t i = 0; i < s->nrings; i++)
		if (s->rings[i].cpu == cpu) {
			if (ioctl((int)fd, PERF_EVENT_IOC_SET_OUTPUT, s->rings[i].fd) < 0)
				return -errno;
			return 0;
		}
	size_t pages = s->o.cpu ? RING_PAGES : 64; /* no samples: maps and tasks only */
	void *base;
	for (;;) {
		base = mmap(NULL, (pages + 1) * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, (int)fd, 0);
		if (base != MAP_FAILED || pages <= 8)
			break;
		pages /= 2; /* perf_event_mlock_kb limits unprivileged users */
	}
	if (base == MAP_FAILED)
		return -errno;
	s->rings = xrealloc(s->rings, (s->nrings + 1) * sizeof(*s->rings));
	s->rings[s->nrings++] = (struct ring){.fd = (int)fd, .base = base, .size = pages * 4096, .cpu = cpu};
	return 0;
}

static int list_tasks(pid_t pid, pid_t **out)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	DIR *d = opendir(path);
	if (!d)
		return -errno;
	size_t n = 0, cap = 0;
	pid_t *tids = NULL;
	struct dirent *e;
	while ((e = readdir(d))) {
		int t = atoi(e->d_name);
		if (t <= 0)
			continue;
		ARR_GROW(tids, cap, n + 1);
		tids[n++] = t;
	}
	closedir(d);
	*out = tids;
	return (int)n;
}

static void on_python(void *ctx, uint32_t pid, struct pyproc *py);
static int bpf_register(struct sampler *s, uint32_t pid, struct pyproc *py);

static int perf_sampler_open(struct sampler **out, const struct sampler_opts *o, struct recorder *r)
{
	struct sampler *s = xcalloc(1, sizeof(*s));
	s->o = *o;
	s->r = r;
	s->scratch_size = 1 << 16;
	s->scratch = xmalloc(s->scratch_size);
	bool exclude_kernel = false;
	int rc = 0, opened = 0, cpus = ncpus();
	u64map__init(&s->bpf_pids);
	s->opened_ns = now_ns();
	const char *drop = getenv("KILN_TEST_DROP_SAMPLES");
	s->test_drop = drop && *drop == '1';
	if (o->cpu)
		s->bpf = pybpf__open(s->bpf_why, sizeof(s->bpf_why));
	pid_t *tids = NULL;
	int ntids = 1;
	if (o->launch) {
		tids = xmalloc(sizeof(*tids));
		tids[0] = o->pid;
	} else {
		ntids = list_tasks(o->pid, &tids);
		if (ntids < 0) {
			rc = ntids;
			goto fail;
		}
	}
	for (int t = 0; t < ntids; t++) {
		for (int cpu = 0; cpu < cpus; cpu++) {
			int e = open_one(s, tids[t], cpu, &exclude_kernel);
			if (e == 0) {
				opened++;
				continue;
			}
			if (e == -ESRCH)
				break; /* the thread ended meanwhile */
			if (e == -ENODEV || e == -EINVAL)
				continue; /* an offline CPU */
			rc = e;
			goto fail;
		}
	}
	free(tids);
	if (!opened) {
		rc = -ESRCH;
		goto fail_notids;
	}
	s->kernel = o->cpu && !exclude_kernel;
	if (s->bpf) {
		recorder__set_python_reader(r, "by eBPF in the sampled thread, at each sample");
		recorder__on_python(r, on_python, s);
		struct pyproc *py = recorder__python(r, (uint32_t)o->pid);
		if (py) /* found before the hook was set: an attached process's maps */
			bpf_register(s, (uint32_t)o->pid, py);
	} else if (o->cpu) {
		json_object_set_new(recorder__meta(r), "python_frames_unavailable", json_string(s->bpf_why));
		recorder__meta_changed(r);
	}
	if (o->cpu) /* said only of CPU sampling */
		recorder__set_kernel_stacks(r, s->kernel);
	*out = s;
	return 0;
fail:
	free(tids);
fail_notids:
	s->o.launch = false;
	perf_sampler_ops.close(s);
	return rc;
}

static int perf_sampler_start(struct sampler *s)
{
	if (s->o.launch)
		return 0; /* enabled by the kernel at exec */
	for (size_t i = 0; i < s->nfds; i++)
		ioctl(s->fds[i], PERF_EVENT_IOC_ENABLE, 0);
	return 0;
}

static int perf_sampler_stop(struct sampler *s)
{
	for (size_t i = 0; i < s->nfds; i++)
		ioctl(s->fds[i], PERF_EVENT_IOC_DISABLE, 0);
	return 0;
}

/* ---- record parsing ---- */

struct rd {
	const unsigned char *p, *end;
};

static uint64_t rd_u64(struct rd *d)
{
	uint64_t v = 0;
	if (d->end - d->p >= 8)
		memcpy(&v, d->p, 8);
	d->p += 8;
	return v;
}

/* Register pid with the eBPF reader (again when it runs another
 * interpreter since: exec). */
static int bpf_register(struct sampler *s, uint32_t pid, struct pyproc *py)
{
	bool created;
	struct u64map_ent *e = u64map__upsert(&s->bpf_pids, pid, &created);
	if (!created && e->v1 == (uint64_t)(uintptr_t)py)
		return 0;
	e->v1 = (uint64_t)(uintptr_t)py;
	return pybpf__add(s->bpf, pid, pyproc__offsets(py), pyproc__runtime(py));
}

static void on_python(void *ctx, uint32_t pid, struct pyproc *py)
{
	struct sampler *s = ctx;
	if (s->bpf)
		bpf_register(s, pid, py);
}

/* The Python frames thread tid ran at the instant of its sample (time,
 * ip), as the eBPF reader caught them (recorder__stack_py's npy). The
 * process was registered when the recorder found its interpreter
 * (on_python: at its exec or fork; an attached one when the sampler opened). Without the reader, or without
 * its record for this sample, none: -3, shown as such, never guessed from
 * what the thread runs later. */
static int python_at_sample(struct sampler *s, struct pyproc *py, uint32_t tid, uint64_t when, uint64_t ip,
			    struct pyframe *pf)
{
	if (!s->bpf)
		return -3;
	const struct kiln_bpf_sample *rec = pybpf__take(s->bpf, tid, when, ip);
	if (!rec)
		return -3;
	if (rec->n == KILN_BPF_NO_TSTATE)
		return -1;
	if (rec->n < 0)
		return -2;
	bool pyt;
	return pyproc__frames_of(py, rec->f, rec->n, rec->flags & (KILN_BPF_TRUNCATED | KILN_BPF_READ_FAULT), pf,
				 KILN_MAX_DEPTH, &pyt);
}

static void handle_sample(struct sampler *s, const unsigned char *p, size_t len)
{
	struct rd d = {p, p + len};
	uint64_t ip = rd_u64(&d);
	uint64_t pidtid = rd_u64(&d);
	uint32_t pid = (uint32_t)pidtid, tid = (uint32_t)(pidtid >> 32);
	uint64_t when = rd_u64(&d);
	rd_u64(&d); /* cpu */
	rd_u64(&d); /* period */
	uint64_t kips[KILN_MAX_DEPTH];
	int nk = 0;
	if (s->kernel) {
		uint64_t nr = rd_u64(&d);
		for (uint64_t i = 0; i < nr && d.p <= d.end; i++) {
			uint64_t k = rd_u64(&d);
			if (k >= (uint64_t)-4095) /* PERF_CONTEXT_* markers */
				continue;
			if (nk < KILN_MAX_DEPTH / 2)
				kips[nk++] = k;
		}
	}
	uint64_t abi = rd_u64(&d);
	uint64_t regs[NREGS] = {0};
	if (abi)
		for (int i = 0; i < NREGS; i++)
			regs[i] = rd_u64(&d);
	uint64_t ssize = rd_u64(&d);
	const unsigned char *stack = d.p;
	if (d.p > d.end || (uint64_t)(d.end - d.p) < ssize)
		return;
	d.p += ssize;
	uint64_t dyn = ssize ? rd_u64(&d) : 0;
	if (dyn > ssize)
		dyn = ssize;
	if (d.p > d.end || !abi)
		return; /* a kernel thread or a malformed sample */
	/* regs are in mask bit order: AX BX CX DX SI DI BP SP IP R8..R15 */
	struct unwind_regs ur = {
		.ax = regs[0], .bx = regs[1], .cx = regs[2], .dx = regs[3], .si = regs[4], .di = regs[5],
		.bp = regs[6], .sp = regs[7], .ip = regs[8], .r8 = regs[9], .r9 = regs[10], .r10 = regs[11],
		.r11 = regs[12], .r12 = regs[13], .r13 = regs[14], .r14 = regs[15], .r15 = regs[16],
	};
	struct unwind_mem mem = {.stack = stack, .sp = ur.sp, .size = dyn};
	uint64_t ips[KILN_MAX_DEPTH];
	bool truncated;
	if (!s->o.follow && (pid_t)pid != s->o.pid)
		return; /* --no-follow: the kernel inherits events into children; drop theirs */
	recorder__proc(s->r, pid);
	struct pyproc *py = recorder__python(s->r, pid);
	struct pyframe pf[KILN_MAX_DEPTH];
	int npy = py ? python_at_sample(s, py, tid, when, ip, pf) : 0;
	/* the kernel's frames (leaf first), then the user stack they were
	 * entered from */
	memcpy(ips, kips, (size_t)nk * sizeof(*ips));
	int n = nk + unwind__stack(s->r, pid, &ur, &mem, ips + nk, KILN_MAX_DEPTH - nk, &truncated);
	/* the user address under kernel frames is where the kernel was entered
	 * (an interrupt's exact instruction), not a return address */
	uint32_t stack_id = py ? recorder__stack_py(s->r, pid, ips, n, 0, nk > 0 ? nk : -1, truncated, pf, npy)
			       : recorder__stack_at(s->r, pid, ips, n, 0, nk > 0 ? nk : -1, truncated);
	recorder__count(s->r, pid, tid, stack_id, KM_CPU, 1);
}

/* A record's string field (NUL-padded, maybe unterminated) into out. */
static void copy_name(char *out, size_t n, const unsigned char *p, size_t len)
{
	size_t nl = strnlen((const char *)p, len);
	if (nl >= n)
		nl = n - 1;
	memcpy(out, p, nl);
	out[nl] = 0;
}

static void handle_record(struct sampler *s, const struct perf_event_header *h)
{
	const unsigned char *p = (const unsigned char *)(h + 1);
	size_t len = h->size - sizeof(*h);
	switch (h->type) {
	case PERF_RECORD_SAMPLE:
		if (s->o.cpu && !s->test_drop)
			handle_sample(s, p, len);
		break;
	case PERF_RECORD_MMAP2: {
		if (len < 64)
			break;
		uint32_t pid;
		uint64_t addr, mlen, pgoff, ino;
		uint32_t prot;
		memcpy(&pid, p, 4);
		memcpy(&addr, p + 8, 8);
		memcpy(&mlen, p + 16, 8);
		memcpy(&pgoff, p + 24, 8);
		memcpy(&ino, p + 40, 8);
		memcpy(&prot, p + 56, 4);
		char name[4096];
		copy_name(name, sizeof(name), p + 64, len - 64);
		if (prot & 4 /* PROT_EXEC */)
			recorder__mmap(s->r, pid, addr, mlen, pgoff, name, ino);
		break;
	}
	case PERF_RECORD_COMM: {
		if (len < 9)
			break;
		uint32_t pid, tid;
		memcpy(&pid, p, 4);
		memcpy(&tid, p + 4, 4);
		char comm[64];
		copy_name(comm, sizeof(comm), p + 8, len - 8);
		if (h->misc & PERF_RECORD_MISC_COMM_EXEC)
			recorder__exec(s->r, pid, comm);
		recorder__thread_name(s->r, pid, tid, comm);
		break;
	}
	case PERF_RECORD_FORK: {
		if (len < 16)
			break;
		uint32_t pid, ppid, tid, ptid;
		memcpy(&pid, p, 4);
		memcpy(&ppid, p + 4, 4);
		memcpy(&tid, p + 8, 4);
		memcpy(&ptid, p + 12, 4);
		if (pid != ppid && s->o.follow)
			recorder__fork(s->r, pid, ppid);
		break;
	}
	case PERF_RECORD_EXIT: {
		if (len < 16)
			break;
		uint32_t pid, tid;
		memcpy(&pid, p, 4);
		memcpy(&tid, p + 8, 4);
		if (pid == tid && (pid_t)pid != s->o.pid)
			recorder__exit(s->r, pid, -1);
		break;
	}
	case PERF_RECORD_LOST: {
		if (len < 16)
			break;
		uint64_t lost;
		memcpy(&lost, p + 8, 8);
		recorder__lost(s->r, lost);
		break;
	}
	default:
		break;
	}
}

static void drain_ring(struct sampler *s, struct ring *rg)
{
	struct perf_event_mmap_page *mp = rg->base;
	unsigned char *data = (unsigned char *)rg->base + 4096;
	uint64_t head = __atomic_load_n(&mp->data_head, __ATOMIC_ACQUIRE);
	uint64_t tail = mp->data_tail;
	while (tail < head) {
		struct perf_event_header h;
		size_t off = tail % rg->size;
		if (rg->size - off >= sizeof(h)) {
			memcpy(&h, data + off, sizeof(h));
		} else {
			size_t a = rg->size - off;
			memcpy(&h, data + off, a);
			memcpy((char *)&h + a, data, sizeof(h) - a);
		}
		if (h.size < sizeof(h) || h.size > head - tail)
			break;
		const struct perf_event_header *rec;
		if (off + h.size <= rg->size) {
			rec = (const void *)(data + off);
		} else {
			if (h.size > s->scratch_size) {
				s->scratch_size = h.size;
				s->scratch = xrealloc(s->scratch, h.size);
			}
			size_t a = rg->size - off;
			memcpy(s->scratch, data + off, a);
			memcpy(s->scratch + a, data, h.size - a);
			rec = (const void *)s->scratch;
		}
		handle_record(s, rec);
		tail += h.size;
	}
	__atomic_store_n(&mp->data_tail, tail, __ATOMIC_RELEASE);
}

static int perf_sampler_read(struct sampler *s, int timeout_ms)
{
	struct pollfd pfd[64];
	size_t n = s->nrings < 64 ? s->nrings : 64;
	for (size_t i = 0; i < n; i++)
		pfd[i] = (struct pollfd){.fd = s->rings[i].fd, .events = POLLIN};
	/* with the eBPF reader, a process found to run Python is registered
	 * when its maps are read: soon, so its first Python code is caught */
	if (s->bpf && timeout_ms > 10)
		timeout_ms = 10;
	/* for a program known to be a Python, until it is found (the first
	 * 2 s): every millisecond, so it is registered before it runs Python */
	if (s->bpf && s->o.python && timeout_ms > 1 && !s->bpf_pids.len && now_ns() - s->opened_ns < 2000000000ull)
		timeout_ms = 1;
	if (timeout_ms > 0)
		poll(pfd, n, timeout_ms);
	for (size_t i = 0; i < s->nrings; i++)
		drain_ring(s, &s->rings[i]);
	return 0;
}

/* The eBPF reader's cost and losses (META "python_ebpf"). */
static void perf_sampler_report(struct sampler *s)
{
	if (!s->bpf)
		return;
	struct pybpf_stats st;
	pybpf__stats(s->bpf, &st);
	if (!st.runs)
		return;
	json_object_set_new(recorder__meta(s->r), "python_ebpf",
			    json_pack("{s:I, s:I, s:I, s:I}", "runs", (json_int_t)st.runs, "dropped", (json_int_t)st.dropped,
				      "ns", (json_int_t)st.ns, "orphans", (json_int_t)st.orphans));
	recorder__meta_changed(s->r);
}

static void perf_sampler_close(struct sampler *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->nrings; i++)
		munmap(s->rings[i].base, s->rings[i].size + 4096);
	for (size_t i = 0; i < s->nfds; i++)
		close(s->fds[i]);
	if (s->bpf) {
		recorder__on_python(s->r, NULL, NULL);
		pybpf__close(s->bpf);
	}
	u64map__release(&s->bpf_pids);
	free(s->rings);
	free(s->fds);
	free(s->scratch);
	free(s);
}

const struct sampler_ops perf_sampler_ops = {
	.name = "perf_event",
	.open = perf_sampler_open,
	.start = perf_sampler_start,
	.read = perf_sampler_read,
	.stop = perf_sampler_stop,
	.report = perf_sampler_report,
	.close = perf_sampler_close,
};
