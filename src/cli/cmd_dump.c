/* kiln dump PID [--native] [--json]: every thread of a running process,
 * now: its state (running; sleeping or waiting in a system call, named) and
 * its stack (Python frames with file:line for a Python thread, the native
 * ones with --native or for a program with no Python), as `py-spy dump`;
 * a CPython thread blocked in take_gil is said to wait for the GIL.
 *
 * It is a recording of one instant: `record -p PID --wall` for a few
 * milliseconds (the ptrace sampler stops each thread, reads its registers,
 * stack and Python frames, and lets it go), into a private temporary file,
 * then each thread's stack, the one seen most. The time each thread was
 * stopped is said. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "aggregate/profile.h"
#include "cli/cli.h"
#include "export/export.h"
#include "util/util.h"

#define CMD "dump"
#define MAX_THREADS 4096

static void help(void)
{
	printf("usage: kiln dump PID [--native] [--json]\n\n"
	       "Print every thread of a running process, now: its state and its stack,\n"
	       "innermost frame first. A Python thread shows its Python frames with\n"
	       "file:line (--native adds the native ones); other programs show native\n"
	       "frames. Each thread is stopped only while it is read (the time is said).\n\n"
	       "  --native   native frames too, for a Python program\n"
	       "  --json     one JSON object: pid, program, stopped_us, threads[{tid, name,\n"
	       "             state, syscall, frames[{name, file, line}]}]\n");
}

/* The x86-64 system calls a thread is most often found waiting in. */
static const char *syscall_name(long nr)
{
	static const struct {
		long nr;
		const char *name;
	} t[] = {{0, "read"},         {1, "write"},          {7, "poll"},          {17, "pread64"},
		 {18, "pwrite64"},    {19, "readv"},         {20, "writev"},       {23, "select"},
		 {34, "pause"},       {35, "nanosleep"},     {43, "accept"},       {44, "sendto"},
		 {45, "recvfrom"},    {46, "sendmsg"},       {47, "recvmsg"},      {42, "connect"},
		 {61, "wait4"},       {72, "fcntl"},         {74, "fsync"},        {130, "rt_sigsuspend"},
		 {202, "futex"},      {228, "clock_gettime"}, {230, "clock_nanosleep"}, {232, "epoll_wait"},
		 {247, "waitid"},     {270, "pselect6"},     {271, "ppoll"},       {281, "epoll_pwait"},
		 {288, "accept4"},    {299, "recvmmsg"},     {307, "sendmmsg"},    {441, "epoll_pwait2"},
		 {56, "clone"},       {57, "fork"},          {58, "vfork"},        {59, "execve"},
		 {435, "clone3"},     {9, "mmap"},           {11, "munmap"},       {3, "close"},
		 {257, "openat"},     {2, "open"},           {101, "ptrace"},      {62, "kill"},
		 {128, "rt_sigtimedwait"}, {65, "semop"},    {220, "semtimedop"},  {69, "msgsnd"},
		 {70, "msgrcv"},      {208, "io_getevents"}, {333, "io_pgetevents"}, {426, "io_uring_enter"},
		 {73, "flock"},       {16, "ioctl"}};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (t[i].nr == nr)
			return t[i].name;
	return NULL;
}

struct tinfo {
	long tid;
	char name[64];
	char state;
	long syscall; /* -1: not in one (running), -2: unknown */
};

static char *task_file(long pid, long tid, const char *what)
{
	char path[96];
	snprintf(path, sizeof(path), "/proc/%ld/task/%ld/%s", pid, tid, what);
	return read_small_file(path, NULL);
}

static int threads_of(long pid, struct tinfo *out, int max)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%ld/task", pid);
	DIR *d = opendir(path);
	if (!d)
		return -errno;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) && n < max) {
		long tid = atol(e->d_name);
		if (tid <= 0)
			continue;
		struct tinfo *t = &out[n];
		memset(t, 0, sizeof(*t));
		t->tid = tid;
		t->syscall = -2;
		char *c = task_file(pid, tid, "comm");
		if (c) {
			c[strcspn(c, "\n")] = 0;
			snprintf(t->name, sizeof(t->name), "%s", c);
			free(c);
		}
		char *st = task_file(pid, tid, "stat");
		char *rp = st ? strrchr(st, ')') : NULL;
		t->state = rp && rp[1] == ' ' ? rp[2] : '?';
		free(st);
		char *sc = task_file(pid, tid, "syscall");
		if (sc) {
			t->syscall = !strncmp(sc, "running", 7) ? -1 : strtol(sc, NULL, 10);
			free(sc);
		}
		n++;
	}
	closedir(d);
	/* by tid: the main thread first */
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && out[j].tid < out[j - 1].tid; j--) {
			struct tinfo x = out[j];
			out[j] = out[j - 1];
			out[j - 1] = x;
		}
	return n;
}

static void state_text(const struct tinfo *t, char *out, size_t n)
{
	const char *what = t->state == 'R'   ? "running"
			   : t->state == 'S' ? "sleeping"
			   : t->state == 'D' ? "waiting (uninterruptible)"
			   : t->state == 'T' || t->state == 't' ? "stopped"
			   : t->state == 'Z' ? "zombie"
					     : "in state";
	if (t->syscall >= 0) {
		const char *nm = syscall_name(t->syscall);
		if (nm)
			snprintf(out, n, "%s in %s()", what, nm);
		else
			snprintf(out, n, "%s in system call %ld", what, t->syscall);
	} else if (t->state == 'R' || t->syscall == -1) {
		snprintf(out, n, "running");
	} else {
		snprintf(out, n, "%s %c", what, t->state);
	}
}

/* The stack of (pid, tid) seen most in the recording, or UINT32_MAX. */
static uint32_t stack_of(const struct profile *p, uint32_t pid, uint32_t tid)
{
	uint32_t best = UINT32_MAX;
	int64_t bv = 0;
	for (size_t i = 0; i < p->ncells; i++) {
		const struct pcell *c = &p->cells[i];
		if (c->pid == pid && c->tid == tid && c->v[KM_WALL] > bv && !view__task_wait(p, c->stack)) {
			bv = c->v[KM_WALL];
			best = c->stack;
		}
	}
	return best;
}

/* The asyncio tasks suspended in (pid, tid)'s event loop, each with where
 * it waits (its await chain, outermost first): printed, or as JSON. */
static json_t *tasks_of(const struct profile *p, uint32_t pid, uint32_t tid, bool json)
{
	json_t *a = json_array();
	int n = 0;
	for (size_t i = 0; i < p->ncells; i++) {
		const struct pcell *c = &p->cells[i];
		if (c->pid != pid || c->tid != tid || !c->v[KM_WALL] || !view__task_wait(p, c->stack))
			continue;
		const struct pframe *fr[256];
		size_t k = profile__stack_frames(p, c->stack, fr, 256);
		if (!k)
			continue;
		if (!json && !n++)
			printf("  its event loop's suspended tasks (where each awaits, outermost first):\n");
		json_t *chain = json_array();
		if (!json)
			printf("    %s", profile__str(p, fr[0]->func));
		for (size_t j = 1; j < k; j++) {
			const char *file = profile__str(p, fr[j]->file), *base = strrchr(file, '/');
			base = base ? base + 1 : file;
			if (json)
				json_array_append_new(chain, json_pack("{s:s, s:s, s:I}", "name", profile__str(p, fr[j]->func),
								       "file", file, "line", (json_int_t)fr[j]->line));
			else if (*base)
				printf("%s%s (%s:%u)", j == 1 ? ": " : " > ", profile__str(p, fr[j]->func), base, fr[j]->line);
			else
				printf("%s%s", j == 1 ? ": " : " > ", profile__str(p, fr[j]->func));
		}
		if (json)
			json_array_append_new(a, json_pack("{s:s, s:o}", "task", profile__str(p, fr[0]->func) + 5, "awaits", chain));
		else {
			json_decref(chain);
			putchar('\n');
		}
	}
	return a;
}

static bool has_python(const struct profile *p)
{
	for (size_t i = 0; i < p->nlocs; i++)
		for (uint16_t k = 0; k < p->locs[i].nframes; k++)
			if (p->locs[i].frames[k].kind == FK_PYTHON)
				return true;
	return false;
}

static bool skip_frame(const struct profile *p, const struct pframe *f)
{
	const char *nm = profile__str(p, f->name);
	return f->kind == FK_MARKER && (!strcmp(nm, "[native]") || !strcmp(nm, "[truncated]"));
}

static void frame_where(const struct profile *p, const struct pframe *f, char *out, size_t n)
{
	const char *file = profile__str(p, f->file);
	out[0] = 0;
	if (file[0] && f->line)
		snprintf(out, n, "%s:%u", file, f->line);
	else if (file[0])
		snprintf(out, n, "%s", file);
	else if (f->module < p->nmodules)
		snprintf(out, n, "%s", path_base(p->modules[f->module].path));
}

int cmd_dump(int argc, char **argv)
{
	static const struct option lo[] = {
		{"native", no_argument, NULL, 'n'}, {"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {0}};
	bool native = false, json = false;
	int c;
	optind = 0;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		if (c == 'n')
			native = true;
		else if (c == 'j')
			json = true;
		else if (c == 'h') {
			help();
			return 0;
		} else
			return cli__usage(CMD, "unknown option");
	}
	if (optind != argc - 1)
		return cli__usage(CMD, optind >= argc ? "which process? (kiln dump PID)" : "one PID only");
	long pid;
	if (!cli__parse_long(argv[optind], 1, 2147483647, &pid))
		return cli__usage(CMD, "'%s' is not a process id", argv[optind]);
	char st = proc_state((int)pid, 0);
	if (!st)
		return cli__error(CMD, "no process with pid %ld", pid);
	if (st == 'Z' || st == 'X')
		return cli__error(CMD, "pid %ld is a zombie: it has exited and has no threads to show", pid);
	static struct tinfo ti[MAX_THREADS];
	int nt = threads_of(pid, ti, MAX_THREADS);
	if (nt <= 0)
		return cli__error(CMD, "cannot list the threads of pid %ld: %s", pid, strerror(nt < 0 ? -nt : ESRCH));

	/* one instant, recorded into a private folder */
	char dir[4096];
	if (cli__private_dir(CMD, "dump", dir, sizeof(dir)))
		return 1;
	char path[4200], pids[32];
	snprintf(path, sizeof(path), "%s/dump.kiln", dir);
	snprintf(pids, sizeof(pids), "%ld", pid);
	/* 20 ms is a few rounds of every thread; on a loaded machine a round can
	 * be late: a thread still there that no round caught is recorded again,
	 * longer (at most three recordings) */
	static char durs[][8] = {"0.02", "0.1", "0.4"};
	char a_rec[] = "record", a_q[] = "-q", a_p[] = "-p", a_wall[] = "--wall", a_f[] = "-F", a_hz[] = "200",
	     a_d[] = "-d", a_o[] = "-o";
	uint64_t t0 = now_ns();
	struct profile p;
	int rc;
	for (size_t try = 0;; try++) {
		char *rargv[] = {a_rec, a_q, a_p, pids, a_wall, a_f, a_hz, a_d, durs[try], a_o, path, NULL};
		optind = 0;
		record_cmd = CMD; /* its refusals are said as kiln dump's */
		rc = cmd_record((int)(sizeof(rargv) / sizeof(rargv[0])) - 1, rargv);
		record_cmd = "record";
		memset(&p, 0, sizeof(p));
		char err[256] = "";
		if (rc != 0 || profile__load(&p, path, err, sizeof(err)) < 0) {
			unlink(path);
			rmdir(dir);
			if (rc == 0)
				cli__error(CMD, "cannot read what was recorded of pid %ld: %s", pid, err);
			return rc ? rc : 1;
		}
		unlink(path);
		bool missed = false;
		for (int i = 0; i < nt && !missed; i++)
			missed = stack_of(&p, (uint32_t)pid, (uint32_t)ti[i].tid) == UINT32_MAX &&
				 proc_state((int)pid, (int)ti[i].tid) != 0;
		if (!missed || try + 1 == sizeof(durs) / sizeof(durs[0]))
			break;
		profile__release(&p);
	}
	uint64_t took = now_ns() - t0;
	rmdir(dir);
	bool py = has_python(&p);
	p.python_only = py && !native;
	json_t *ps = json_object_get(p.meta, "ptrace_stops");
	json_int_t nst = json_integer_value(json_object_get(ps, "stops"));
	double stop_us = nst > 0 ? (double)json_integer_value(json_object_get(ps, "ns")) / (double)nst / 1000.0 : 0;
	const struct pprocess *pp = profile__process(&p, (uint32_t)pid);
	const char *prog = pp && pp->exe ? pp->exe : p.program ? p.program : "?";

	json_t *jthreads = json_array();
	if (!json)
		printf("# kiln dump of pid %ld (%s): %d thread%s; each was stopped %.1f us on average to be read "
		       "(%.0f ms in all)\n",
		       pid, prog, nt, nt == 1 ? "" : "s", stop_us, (double)took / 1e6);
	for (int i = 0; i < nt; i++) {
		const struct tinfo *t = &ti[i];
		char state[128];
		state_text(t, state, sizeof(state));
		uint32_t sid = stack_of(&p, (uint32_t)pid, (uint32_t)t->tid);
		const struct pframe *fr[512];
		if (py && sid != UINT32_MAX && view__waits_for_gil(&p, sid))
			snprintf(state, sizeof(state), "waiting for the GIL");
		size_t n = sid != UINT32_MAX ? profile__stack_frames(&p, sid, fr, 512) : 0;
		json_t *jframes = json_array();
		if (!json)
			printf("\nThread %ld \"%s\" (%s)%s\n", t->tid, t->name, state,
			       sid == UINT32_MAX ? ": not caught (it ended, or was created, meanwhile)" : "");
		for (size_t k = n; k-- > 0;) { /* innermost first */
			if (skip_frame(&p, fr[k]))
				continue;
			char where[600];
			frame_where(&p, fr[k], where, sizeof(where));
			const char *nm = profile__str(&p, fr[k]->name);
			if (json)
				json_array_append_new(jframes, json_pack("{s:s, s:s, s:I}", "name", nm, "file",
									 profile__str(&p, fr[k]->file), "line",
									 (json_int_t)fr[k]->line));
			else
				printf("    %s%s%s%s\n", nm, where[0] ? " (" : "", where, where[0] ? ")" : "");
		}
		json_t *jtasks = tasks_of(&p, (uint32_t)pid, (uint32_t)t->tid, json);
		if (json) {
			const char *sc = t->syscall >= 0 ? syscall_name(t->syscall) : NULL;
			json_array_append_new(jthreads,
					      json_pack("{s:I, s:s, s:s, s:o, s:o, s:o}", "tid", (json_int_t)t->tid, "name",
							t->name, "state", state, "syscall",
							sc ? json_string(sc) : json_null(), "frames", jframes, "asyncio_tasks",
							jtasks));
		} else {
			json_decref(jframes);
			json_decref(jtasks);
		}
	}
	/* a wait with a timeout that the stops ended: the program saw EINTR */
	json_int_t we = export__waits_line(json ? NULL : stdout, &p, "the stops");
	if (json) {
		json_t *o = json_pack("{s:I, s:s, s:b, s:f, s:I, s:o}", "pid", (json_int_t)pid, "program", prog, "python",
				      py, "stopped_us", stop_us, "waits_ended", we, "threads", jthreads);
		char *s = json_dumps(o, JSON_INDENT(1));
		if (s)
			printf("%s\n", s);
		free(s);
		json_decref(o);
	} else {
		json_decref(jthreads);
	}
	profile__release(&p);
	return fflush(stdout) == 0 ? 0 : 1;
}
