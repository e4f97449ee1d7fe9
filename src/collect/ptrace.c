/* The ptrace sampler backend: for wall-clock sampling (--wall: sleeping and
 * blocked threads too, in the stack they wait in) and for on-CPU sampling
 * where perf_event_open is refused. Threads are PTRACE_SEIZEd (never
 * ATTACH + SIGSTOP), and stopped one at a time with PTRACE_INTERRUPT only
 * for as long as it takes to read their registers and copy the top of their
 * stack (process_vm_readv); unwinding happens after they run again. If kiln
 * dies, the kernel detaches the tracees and, as no SIGSTOP was ever sent,
 * they simply go on running.
 *
 *   every 1/F s:  for each thread (on-CPU: only those in state R)
 *     INTERRUPT ─► wait for the stop ─► GETREGS + copy stack ─► CONT ─► unwind
 *
 * The sampler owns every wait of its tracees (service): stops that are not
 * ours are passed on at once, also between samples (every millisecond) —
 * a signal being delivered is re-injected, a group stop is kept with
 * LISTEN — and an exit is only ever recognised by its si_code; the traced
 * program's own exit is left for kiln record to reap. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "collect/pyasync.h"
#include "collect/python.h"
#include "collect/recorder.h"
#include "collect/sampler.h"
#include "collect/tracee.h"
#include "collect/unwind.h"
#include "kiln/kiln.h"
#include "util/util.h"

struct ptask {
	pid_t tid;
	bool attached, gone;
	bool want_stop; /* we asked for a stop (PTRACE_INTERRUPT) */
	bool group_stop; /* the stop we were given is a group stop (SIGSTOP, ^Z) */
	/* asyncio: the callback (Handle) its loop ran at the samples of this
	 * stretch, from the first to the last sample that saw it */
	uint64_t sl_handle, sl_first, sl_last, sl_realtime;
	uint32_t sl_stack, sl_n;
	char sl_task[128];
};

struct sampler {
	struct sampler_opts o;
	struct recorder *r;
	struct ptask *tasks;
	size_t ntasks, ctasks;
	unsigned char *stack;
	struct pyframe *py; /* KILN_MAX_DEPTH */
	uint64_t next_tick, period_ns, last_scan;
	/* --wall: when the last tick began, the time since not yet charged
	 * (tick_weight), and what this tick's samples weigh (1 without --wall) */
	uint64_t last_tick;
	int64_t credit, weight;
	uint64_t late_ticks, uncharged_ticks; /* META "wall_late" */
	bool stopped;
	uint64_t stops, stopped_ns; /* what sampling cost the threads (META "ptrace_stops") */
	uint64_t waits_ended; /* timed waits our stops ended with EINTR (META "waits_ended") */
	/* asyncio tasks (collect/pyasync.h) of the traced CPython */
	struct pyasync *pa;
	struct pyproc *pa_of;
	struct pytask run;
	struct pyasync_at at; /* where the last sample's loop frames are */
	int run_kind;        /* pyasync__running's answer for the last sample */
	struct pytask *susp; /* PYASYNC_TASKS */
	int nsusp;
	uint64_t susp_more;  /* samples at which more tasks waited than were charged */
	uint64_t gil_kept, gil_dropped; /* --gil */
};

/* Loop stretches of at least this long are kept (report --slow-callbacks
 * shows those past its own bar). */
#define SLOW_MIN_NS 10000000ull

/* The stretch t's loop spent in one callback ends: kept if long enough. */
static void stretch_end(struct sampler *s, struct ptask *t)
{
	if (t->sl_handle && t->sl_n >= 2) {
		uint64_t dur = t->sl_last - t->sl_first + s->period_ns;
		if (dur >= SLOW_MIN_NS)
			recorder__slow(s->r, (uint32_t)s->o.pid, (uint32_t)t->tid, t->sl_realtime, dur, t->sl_stack,
				       t->sl_task);
	}
	t->sl_handle = 0;
	t->sl_n = 0;
}

/* A sample of t saw its loop in handle (0: none) with stack. */
static void stretch_see(struct sampler *s, struct ptask *t, uint64_t handle, const char *task, uint32_t stack)
{
	uint64_t now = now_ns();
	if (!handle || handle != t->sl_handle || strcmp(task, t->sl_task)) {
		stretch_end(s, t);
		if (!handle)
			return;
		t->sl_handle = handle;
		t->sl_first = now;
		t->sl_realtime = realtime_ns();
		snprintf(t->sl_task, sizeof(t->sl_task), "%s", task);
	}
	t->sl_last = now;
	t->sl_stack = stack;
	t->sl_n++;
}

/* While t is stopped: its running task named in its frames (a "Task NAME"
 * frame inside Handle._run). The handle its loop runs, 0 none. */
static uint64_t asyncio_running(struct sampler *s, struct pyproc *py, int *npy)
{
	s->nsusp = 0;
	if (*npy <= 0)
		return 0;
	if (s->pa_of != py) {
		pyasync__free(s->pa);
		s->pa = pyasync__new(py);
		s->pa_of = py;
		if (!s->susp)
			s->susp = xcalloc(PYASYNC_TASKS, sizeof(*s->susp));
	}
	pyasync__scan(s->pa, s->py, *npy, &s->at);
	int at = s->at.handle;
	s->run_kind = pyasync__running(s->pa, s->py, at, &s->run);
	uint64_t handle = s->run_kind >= 0 ? s->run.handle : 0;
	if (s->run_kind == 0 && at > 0 && *npy < KILN_MAX_DEPTH) {
		memmove(&s->py[at + 1], &s->py[at], (size_t)(*npy - at) * sizeof(*s->py));
		s->py[at] = (struct pyframe){.code = 1, .label = s->run.name};
		(*npy)++;
		if (s->at.run_once >= at) /* outer frames moved one out */
			s->at.run_once++;
	}
	return handle;
}

/* With --wall, once t runs again (it is stopped only for its own frames):
 * the tasks its loop holds suspended, each validated as it is read. */
static void asyncio_suspended(struct sampler *s, int npy)
{
	s->nsusp = 0;
	if (!s->pa || npy <= 0)
		return;
	uint64_t loop = pyasync__loop(s->pa, s->py, s->at.run_once);
	bool more = false;
	if (loop)
		s->nsusp = pyasync__suspended(s->pa, s->py, npy, s->at.run_once, loop, s->run_kind == 0 ? s->run.addr : 0,
					      s->susp, PYASYNC_TASKS, &more);
	s->susp_more += more;
}

/* Each suspended task's wait: a wall sample under "Task NAME" and its
 * await chain, besides the thread's own sample. */
static void asyncio_charge(struct sampler *s, struct ptask *t)
{
	for (int i = 0; i < s->nsusp; i++) {
		struct pytask *k = &s->susp[i];
		struct pyframe fr[PYASYNC_CHAIN + 1];
		int n = 0;
		for (int j = 0; j < k->nchain; j++)
			fr[n++] = k->chain[j];
		fr[n++] = (struct pyframe){.code = 1, .label = k->name};
		uint32_t st = recorder__stack_pyonly(s->r, (uint32_t)s->o.pid, fr, n);
		if (st)
			recorder__charge(s->r, (uint32_t)s->o.pid, (uint32_t)t->tid, st, KM_WALL, s->weight);
	}
}

static struct ptask *task_find(struct sampler *s, pid_t tid)
{
	for (size_t i = 0; i < s->ntasks; i++)
		if (s->tasks[i].tid == tid)
			return &s->tasks[i];
	return NULL;
}

static int seize(struct sampler *s, pid_t tid)
{
	struct ptask *t = task_find(s, tid);
	if (t && t->attached)
		return 0;
	if (ptrace(PTRACE_SEIZE, tid, NULL, NULL) < 0)
		return -errno;
	if (!t) {
		ARR_GROW(s->tasks, s->ctasks, s->ntasks + 1);
		t = &s->tasks[s->ntasks++];
	}
	*t = (struct ptask){.tid = tid, .attached = true};
	return 0;
}

/* Attach to threads we do not know yet (new ones appear while we sample). */
static int scan_tasks(struct sampler *s)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", s->o.pid);
	DIR *d = opendir(path);
	if (!d)
		return -errno;
	int first_err = 0, ok = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		pid_t tid = atoi(e->d_name);
		if (tid <= 0)
			continue;
		int rc = seize(s, tid);
		if (rc == 0)
			ok++;
		else if (rc != -ESRCH && !first_err)
			first_err = rc;
	}
	closedir(d);
	s->last_scan = now_ns();
	return ok ? 0 : (first_err ? first_err : -ESRCH);
}

/* Consume one wait event of t, if there is one, and pass on what is not
 * ours. Returns 1 for the stop we asked for (consumed, t stays stopped),
 * 2 for another event passed on, 0 for nothing pending, -1 when t is gone. */
static int service(struct sampler *s, struct ptask *t)
{
	siginfo_t si;
	memset(&si, 0, sizeof(si));
	/* peek first: an exit is told by si_code alone, and the launched
	 * program's own is kiln record's to reap */
	if (waitid(P_PID, (id_t)t->tid, &si, WSTOPPED | WEXITED | WNOHANG | WNOWAIT | __WALL) < 0) {
		t->gone = true;
		return -1;
	}
	if (si.si_pid == 0)
		return 0;
	if (si.si_code == CLD_EXITED || si.si_code == CLD_KILLED || si.si_code == CLD_DUMPED) {
		t->gone = true;
		if (t->tid != s->o.pid) /* a thread: ours to reap */
			waitpid(t->tid, NULL, __WALL | WNOHANG);
		return -1;
	}
	int status;
	if (waitpid(t->tid, &status, __WALL | WNOHANG) <= 0 || !WIFSTOPPED(status))
		return 0;
	int sig = WSTOPSIG(status), event = status >> 16;
	if (event == PTRACE_EVENT_STOP) {
		if (sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU) {
			if (t->want_stop) {
				/* our interrupt of a stopped thread (a LISTENing one
				 * reports its group stop again): sampled where it
				 * stopped, then left stopped (resume) */
				t->want_stop = false;
				t->group_stop = true;
				return 1;
			}
			/* a real group stop: leave it stopped, as without us */
			ptrace(PTRACE_LISTEN, t->tid, NULL, NULL);
			return 2;
		}
		if (t->want_stop) {
			t->want_stop = false;
			return 1; /* our interrupt */
		}
		ptrace(PTRACE_CONT, t->tid, NULL, NULL); /* e.g. after LISTEN, on SIGCONT */
		return 2;
	}
	if (event) { /* other ptrace events: go on */
		ptrace(PTRACE_CONT, t->tid, NULL, NULL);
		return 2;
	}
	/* signal-delivery-stop: deliver it now; the stop cleared an interrupt
	 * we asked for (any trap clears a pending one): ask again */
	ptrace(PTRACE_CONT, t->tid, NULL, (void *)(long)sig);
	if (t->want_stop)
		ptrace(PTRACE_INTERRUPT, t->tid, NULL, NULL);
	return 2;
}

/* At our stop of t (r: its registers, NULL: read them), unless it is a
 * group stop: a wait without end it ended waits on; a timed one it ended
 * with EINTR is counted (tracee.h). */
static void keep_waiting(struct sampler *s, struct ptask *t, struct user_regs_struct *r)
{
	if (!t->group_stop && tracee__keep_waiting(t->tid, r) == TRACEE_TIMED_EINTR)
		s->waits_ended++;
}

/* After our stop: a thread in a group stop stays stopped (LISTEN), as it
 * would be without kiln; any other runs on (checked: keep_waiting was done
 * on the registers it was sampled with). */
static void resume(struct sampler *s, struct ptask *t, bool checked)
{
	if (t->group_stop) {
		t->group_stop = false;
		ptrace(PTRACE_LISTEN, t->tid, NULL, NULL);
		return;
	}
	if (!checked)
		keep_waiting(s, t, NULL);
	ptrace(PTRACE_CONT, t->tid, NULL, NULL);
}

/* Everything pending for every tracee, passed on at once. */
static void service_all(struct sampler *s)
{
	for (size_t i = 0; i < s->ntasks; i++) {
		struct ptask *t = &s->tasks[i];
		for (int k = 0; k < 16 && t->attached && !t->gone; k++) {
			int rc = service(s, t);
			if (rc == 1) /* a stop we asked for and gave up on: let it go */
				resume(s, t, false);
			if (rc <= 0)
				break;
		}
	}
}

/* Wait for the stop we asked of t, passing on others. 1 when stopped by
 * our interrupt, 0 when it is gone or did not stop in time. */
static int wait_stop(struct sampler *s, struct ptask *t)
{
	uint64_t deadline = now_ns() + 50000000ull;
	for (;;) {
		int rc = service(s, t);
		if (rc == 1)
			return 1;
		if (rc < 0)
			return 0;
		if (now_ns() > deadline)
			return 0; /* left asking: service() continues it when it comes */
		struct timespec ts = {0, 20000};
		nanosleep(&ts, NULL);
	}
}

static size_t copy_stack(pid_t tid, uint64_t sp, unsigned char *out, size_t size)
{
	/* page by page: a read that runs off the stack's end stops there */
	size_t got = 0;
	while (got < size) {
		uint64_t a = sp + got;
		size_t n = 4096 - (a & 4095);
		if (n > size - got)
			n = size - got;
		struct iovec l = {out + got, n}, rm = {(void *)a, n};
		ssize_t k = process_vm_readv(tid, &l, 1, &rm, 1, 0);
		if (k <= 0)
			break;
		got += (size_t)k;
		if ((size_t)k < n)
			break;
	}
	return got;
}

static void sample_task(struct sampler *s, struct ptask *t, int metric)
{
	uint64_t t0 = now_ns();
	if (ptrace(PTRACE_INTERRUPT, t->tid, NULL, NULL) < 0) {
		if (errno == ESRCH)
			t->gone = true;
		return;
	}
	t->want_stop = true;
	if (wait_stop(s, t) != 1)
		return;
	struct user_regs_struct ur;
	size_t got = 0;
	bool ok = ptrace(PTRACE_GETREGS, t->tid, NULL, &ur) == 0;
	if (ok)
		got = copy_stack(t->tid, ur.rsp, s->stack, s->o.stack_size);
	if (ok)
		keep_waiting(s, t, &ur);
	/* Python frames while the thread is stopped: exactly what it runs */
	struct pyproc *py = ok ? recorder__python(s->r, (uint32_t)s->o.pid) : NULL;
	int npy = -1;
	bool pyt;
	uint64_t handle = 0;
	int gil = 1;
	if (py) {
		npy = pyproc__frames(py, t->tid, s->py, KILN_MAX_DEPTH, &pyt);
		handle = asyncio_running(s, py, &npy);
		if (s->o.gil)
			gil = pyproc__gil_holder(py, t->tid);
	}
	resume(s, t, ok);
	s->stops++;
	s->stopped_ns += now_ns() - t0;
	if (s->o.gil && py && gil != 1) { /* --gil: another thread's turn, or no Python state */
		s->gil_dropped++;
		return;
	}
	s->gil_kept += s->o.gil;
	if (!ok)
		return;
	if (py && metric == KM_WALL)
		asyncio_suspended(s, npy);
	uint64_t bias;
	if (!recorder__image_at(s->r, (uint32_t)s->o.pid, ur.rip, &bias, NULL, NULL))
		recorder__read_maps(s->r, (uint32_t)s->o.pid); /* dlopen since the last look */
	struct unwind_regs regs = {
		.ip = ur.rip, .sp = ur.rsp, .bp = ur.rbp, .bx = ur.rbx, .r12 = ur.r12, .r13 = ur.r13,
		.r14 = ur.r14, .r15 = ur.r15, .ax = ur.rax, .cx = ur.rcx, .dx = ur.rdx, .si = ur.rsi,
		.di = ur.rdi, .r8 = ur.r8, .r9 = ur.r9, .r10 = ur.r10, .r11 = ur.r11,
	};
	struct unwind_mem mem = {.stack = s->stack, .sp = ur.rsp, .size = got};
	uint64_t ips[KILN_MAX_DEPTH];
	bool truncated;
	int n = unwind__stack(s->r, (uint32_t)s->o.pid, &regs, &mem, ips, KILN_MAX_DEPTH, &truncated);
	uint32_t stack = py ? recorder__stack_py(s->r, (uint32_t)s->o.pid, ips, n, 0, -1, truncated, s->py, npy)
			    : recorder__stack(s->r, (uint32_t)s->o.pid, ips, n, true, truncated);
	recorder__count(s->r, (uint32_t)s->o.pid, (uint32_t)t->tid, stack, metric, s->weight);
	if (py) {
		stretch_see(s, t, handle, handle && s->run.addr ? s->run.name : "", stack);
		asyncio_charge(s, t);
	}
}

static int ptrace_open(struct sampler **out, const struct sampler_opts *o, struct recorder *r)
{
	struct sampler *s = xcalloc(1, sizeof(*s));
	s->o = *o;
	s->r = r;
	s->stack = xmalloc(o->stack_size);
	s->py = xcalloc(KILN_MAX_DEPTH, sizeof(*s->py));
	s->period_ns = 1000000000ull / (uint64_t)(o->freq > 0 ? o->freq : 99);
	int rc = scan_tasks(s);
	if (rc < 0) {
		ptrace_sampler_ops.close(s);
		return rc;
	}
	if (!o->launch)
		recorder__read_maps(r, (uint32_t)o->pid);
	*out = s;
	return 0;
}

static int ptrace_start(struct sampler *s)
{
	/* launch mode: called once the program has exec'd; its maps are new */
	if (s->o.launch) {
		recorder__exec(s->r, (uint32_t)s->o.pid, NULL);
		recorder__read_maps(s->r, (uint32_t)s->o.pid);
	}
	s->next_tick = now_ns();
	s->last_tick = s->next_tick - s->period_ns;
	return 0;
}

/* --wall: the ticks this one stands for. A tick kiln could not take on time
 * (the machine busy, stopping the threads slow, a first look at a binary)
 * is charged to the next samples, so that wall samples stay the time that
 * passed: the time since the last tick, in periods, each sample at least
 * one (what a sample charged beyond it is taken back from the next), at
 * most a second's worth: a longer gap (kiln stopped) is counted, not
 * charged to whatever the threads were doing after it. */
static int64_t tick_weight(struct sampler *s, uint64_t now)
{
	int64_t period = (int64_t)s->period_ns, most = (int64_t)(1000000000ull / s->period_ns);
	s->credit += (int64_t)(now - s->last_tick);
	s->last_tick = now;
	int64_t w = (s->credit + period / 2) / period;
	if (w < 1)
		w = 1;
	if (w > most) {
		s->uncharged_ticks += (uint64_t)(w - most);
		w = most;
		s->credit = 0;
	} else {
		s->credit -= w * period;
	}
	s->late_ticks += (uint64_t)(w - 1);
	return w;
}

static int ptrace_read(struct sampler *s, int timeout_ms)
{
	if (s->stopped)
		return 0;
	uint64_t now = now_ns(), until = now + (uint64_t)timeout_ms * 1000000ull;
	do {
		/* until the next tick: pass signals and stops on as they come
		 * (a program on a 10 ms timer must get every tick) */
		while (now < s->next_tick && now < until) {
			service_all(s);
			uint64_t wait = s->next_tick - now;
			if (wait > 1000000ull)
				wait = 1000000ull;
			if (now + wait > until)
				wait = until - now;
			struct timespec ts = {0, (long)wait};
			nanosleep(&ts, NULL);
			now = now_ns();
		}
		service_all(s);
		if (now < s->next_tick)
			break;
		if (now - s->last_scan > 100000000ull)
			scan_tasks(s);
		int metric = s->o.wall ? KM_WALL : KM_CPU;
		s->weight = s->o.wall ? tick_weight(s, now) : 1;
		for (size_t i = 0; i < s->ntasks; i++) {
			struct ptask *t = &s->tasks[i];
			if (t->gone || !t->attached)
				continue;
			if (!s->o.wall && proc_state(s->o.pid, t->tid) != 'R')
				continue;
			sample_task(s, t, metric);
		}
		/* forget ended threads */
		size_t k = 0;
		for (size_t i = 0; i < s->ntasks; i++) {
			if (s->tasks[i].gone)
				stretch_end(s, &s->tasks[i]);
			else
				s->tasks[k++] = s->tasks[i];
		}
		s->ntasks = k;
		s->next_tick += s->period_ns;
		now = now_ns();
		if (s->next_tick < now) /* fell behind: do not try to catch up */
			s->next_tick = now + s->period_ns;
	} while (now < until);
	return 0;
}

static int ptrace_stop(struct sampler *s)
{
	if (s->stopped)
		return 0;
	s->stopped = true;
	for (size_t i = 0; i < s->ntasks; i++)
		stretch_end(s, &s->tasks[i]);
	for (size_t i = 0; i < s->ntasks; i++)
		if (s->tasks[i].attached && !s->tasks[i].gone) {
			/* PTRACE_DETACH needs a stopped tracee */
			if (ptrace(PTRACE_INTERRUPT, s->tasks[i].tid, NULL, NULL) == 0) {
				s->tasks[i].want_stop = true;
				if (wait_stop(s, &s->tasks[i]) == 1) {
					keep_waiting(s, &s->tasks[i], NULL);
					ptrace(PTRACE_DETACH, s->tasks[i].tid, NULL, NULL);
				}
			}
			s->tasks[i].attached = false;
		}
	return 0;
}

static void ptrace_report(struct sampler *s)
{
	if (s->o.gil) {
		json_object_set_new(recorder__meta(s->r), "gil_only",
				    json_pack("{s:I, s:I}", "kept", (json_int_t)s->gil_kept, "dropped",
					      (json_int_t)s->gil_dropped));
		recorder__meta_changed(s->r);
	}
	if (s->late_ticks || s->uncharged_ticks) {
		json_object_set_new(recorder__meta(s->r), "wall_late",
				    json_pack("{s:I, s:I}", "ticks", (json_int_t)s->late_ticks, "uncharged",
					      (json_int_t)s->uncharged_ticks));
		recorder__meta_changed(s->r);
	}
	if (s->susp_more) {
		json_object_set_new(recorder__meta(s->r), "asyncio_tasks_left_out", json_integer((json_int_t)s->susp_more));
		recorder__meta_changed(s->r);
	}
	recorder__waits_ended(s->r, s->waits_ended);
	s->waits_ended = 0; /* said */
	if (!s->stops)
		return;
	json_object_set_new(recorder__meta(s->r), "ptrace_stops",
			    json_pack("{s:I, s:I}", "stops", (json_int_t)s->stops, "ns", (json_int_t)s->stopped_ns));
	recorder__meta_changed(s->r);
}

static void ptrace_close(struct sampler *s)
{
	if (!s)
		return;
	ptrace_stop(s);
	pyasync__free(s->pa);
	free(s->susp);
	free(s->tasks);
	free(s->stack);
	free(s->py);
	free(s);
}

const struct sampler_ops ptrace_sampler_ops = {
	.name = "ptrace",
	.open = ptrace_open,
	.start = ptrace_start,
	.read = ptrace_read,
	.stop = ptrace_stop,
	.report = ptrace_report,
	.close = ptrace_close,
};
