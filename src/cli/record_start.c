/* How kiln record gets its target running under it: a launched program
 * (forked, held on a pipe while the samplers open on it, then exec'd with
 * the shim preloaded) or a running process (the sampler attached; with
 * --heap the shim injected, collect/heapattach.c); the sampler chosen
 * (perf_event, or ptrace for --wall, --gil, a CPython where eBPF cannot
 * read frames, or where perf_event is refused). */
#include <errno.h>
#include <limits.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/un.h>
#include <sys/wait.h>
#include "cli/cli.h"
#include "collect/preload.h"
#include "symbols/image.h"

#include "cli/record.h"

static char *shim_path(void)
{
	const char *env = getenv("KILN_SHIM");
	if (env && *env)
		return xstrdup(env);
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return NULL;
	self[n] = 0;
	char *slash = strrchr(self, '/');
	if (!slash)
		return NULL;
	*slash = 0;
	static const char *const rel[] = {"/libkiln_shim.so", "/../lib/kiln/libkiln_shim.so"};
	for (size_t i = 0; i < ARRAY_SIZE(rel); i++) {
		char p[PATH_MAX + 64];
		snprintf(p, sizeof(p), "%s%s", self, rel[i]);
		char *real = realpath(p, NULL);
		if (real)
			return real;
	}
	return NULL;
}

/* PF_KTHREAD in /proc/PID/stat's flags (field 9). */
bool record_is_kernel_thread(long pid)
{
	unsigned long flags = 0;
	return proc_stat_scan((int)pid, " %*c %*d %*d %*d %*d %*d %lu", &flags) == 1 && (flags & 0x00200000UL);
}

/* The process (Tgid) a thread id belongs to, or -1. */
long record_thread_group(long tid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%ld/status", tid);
	char *s = read_small_file(path, NULL);
	char *t = s ? strstr(s, "\nTgid:") : NULL;
	long tgid = t ? strtol(t + 6, NULL, 10) : -1;
	free(s);
	return tgid;
}

bool record_is_zombie(long pid)
{
	char st = proc_state((int)pid, 0);
	return st == 'Z' || st == 'X';
}

double record_proc_cpu(long pid)
{
	unsigned long long ut, st; /* utime, stime: fields 14 and 15 */
	if (proc_stat_scan((int)pid, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* perf_event opens one descriptor per thread and CPU: a 700-thread process
 * on 2 CPUs needs more than the usual soft limit of 1024. Raise it to the
 * hard limit, as perf does. */
static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static char *find_program(const char *name);

/* Whether the program is a CPython: attached, one of its mappings is an
 * interpreter or libpython; launched, the program is one by name, by its
 * #! line, or by the runtime symbol it defines. A guess that only picks
 * the sampler: the recorder finds the runtime itself. */
static bool target_is_python(const struct rec *st, pid_t pid, bool launch)
{
	if (!launch) {
		char path[64];
		snprintf(path, sizeof(path), "/proc/%d/maps", pid);
		FILE *f = fopen(path, "re");
		char line[4096];
		bool yes = false;
		while (f && !yes && fgets(line, sizeof(line), f)) {
			char *at = strchr(line, '/');
			if (at) {
				at[strcspn(at, "\n")] = 0;
				yes = path_is_python(at);
			}
		}
		if (f)
			fclose(f);
		return yes;
	}
	if (!st->o.argv || !st->o.argv[0])
		return false;
	if (path_is_python(st->o.argv[0]))
		return true;
	char *prog = find_program(st->o.argv[0]);
	if (!prog)
		return false;
	bool yes = false;
	int fd = open(prog, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	char head[256] = {0};
	if (fd >= 0 && read(fd, head, sizeof(head) - 1) > 2) {
		if (head[0] == '#' && head[1] == '!') {
			head[strcspn(head, "\n")] = 0;
			yes = strstr(head, "python") != NULL;
		} else if (!memcmp(head, "\177ELF", 4)) {
			struct image *img = image__open(prog);
			uint64_t a, n;
			yes = img && image__find_symbol(img, "_PyRuntime", &a, &n) == 0;
			image__free(img);
		}
	}
	if (fd >= 0)
		close(fd);
	free(prog);
	return yes;
}

/* perf_event first; ptrace for --wall and where perf_event is refused.
 * For a Python program where the eBPF frame reader cannot run, ptrace too:
 * frames read while the sampled thread is stopped are those of the sample,
 * as py-spy reads them; perf_event would leave them unreadable. */
int record_open_sampler(struct rec *st, pid_t pid, bool launch)
{
	raise_nofile();
	struct sampler_opts so = {
		.pid = pid, .launch = launch, .follow = st->o.follow, .cpu = st->o.cpu && !st->o.wall,
		.wall = st->o.wall, .freq = (int)st->o.freq, .stack_size = (uint32_t)st->o.stack_size,
		.gil = st->o.gil,
	};
	int rc = -EACCES;
	so.python = target_is_python(st, pid, launch);
	if (st->o.gil) /* who holds the GIL is read while the thread is stopped */
		recorder__set_python_reader(st->r, "by ptrace, the thread stopped at each sample");
	if (!record_ptrace_sampling(&st->o)) {
		st->ops = &perf_sampler_ops;
		/* KILN_FORCE_PTRACE=1: behave as where perf_event_open is refused
		 * (containers, perf_event_paranoid); the tests use it */
		const char *force = getenv("KILN_FORCE_PTRACE");
		rc = force && *force == '1' && so.cpu ? -EACCES : st->ops->open(&st->s, &so, st->r);
		json_t *meta = recorder__meta(st->r);
		const char *nobpf = json_string_value(json_object_get(meta, "python_frames_unavailable"));
		if (rc == 0 && so.cpu && nobpf && so.python) {
			cli__warn(CMD, "python: %s: sampling with ptrace instead, which stops each sampled thread while it "
				       "reads its frames (as py-spy does; the report says for how long)", nobpf);
			st->ops->close(st->s);
			st->s = NULL;
			json_object_del(meta, "python_frames_unavailable");
			recorder__set_python_reader(st->r, "by ptrace, the thread stopped at each sample");
			rc = -EACCES;
			goto ptrace;
		}
		if (rc == 0 || (rc != -EACCES && rc != -EPERM && rc != -ENOSYS && rc != -ENOENT) || !so.cpu)
			goto out;
		char *par = read_small_file("/proc/sys/kernel/perf_event_paranoid", NULL);
		cli__warn(CMD, "perf_event_open refused (%s; perf_event_paranoid=%s): sampling with ptrace instead",
			  strerror(-rc), par ? strtok(par, "\n") : "?");
		free(par);
	}
ptrace:
	st->ops = &ptrace_sampler_ops;
	rc = st->ops->open(&st->s, &so, st->r);
out:
	if (rc == 0 && st->ops == &perf_sampler_ops && so.cpu && !st->o.quiet &&
	    json_is_false(json_object_get(recorder__meta(st->r), "kernel_stacks")))
		cli__warn(CMD, "kernel stacks not recorded (perf_event_paranoid > 1 and no root): time in the kernel "
			       "is charged to the user-space code that entered it");
	if (rc < 0)
		st->s = NULL;
	return rc;
}

/* The file execvp would run for name (PATH searched when it has no '/'). */
static char *find_program(const char *name)
{
	if (strchr(name, '/'))
		return xstrdup(name);
	const char *path = getenv("PATH");
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin";
	for (const char *p = path; *p;) {
		size_t n = strcspn(p, ":");
		struct buf b;
		buf__init(&b);
		buf__printf(&b, "%.*s/%s", (int)n, n ? p : ".", name);
		if (access(buf__cstr(&b), X_OK) == 0)
			return (char *)b.data;
		buf__release(&b);
		p += n + (p[n] == ':');
	}
	return NULL;
}

int record_launch(struct rec *st)
{
	int go[2], err[2];
	if (pipe2(go, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0)
		return cli__error(CMD, "pipe: %s", strerror(errno)), KILN_EXIT_RECORD_FAIL;
	if (st->h) {
		char *shim = shim_path();
		if (!shim) {
			cli__error(CMD, "cannot find libkiln_shim.so beside kiln (set KILN_SHIM)");
			return KILN_EXIT_RECORD_FAIL;
		}
		const char *old = getenv("LD_PRELOAD");
		struct buf pre;
		buf__init(&pre);
		buf__printf(&pre, "%s%s%s", shim, old && *old ? ":" : "", old && *old ? old : "");
		setenv("LD_PRELOAD", buf__cstr(&pre), 1);
		buf__release(&pre);
		free(shim);
		char v[64];
		snprintf(v, sizeof(v), "%d:%llu", channel__child_fd(st->ch),
			 (unsigned long long)channel__child_ino(st->ch));
		setenv("KILN_FD", v, 1);
		setenv("KILN_SOCK", channel__sock_path(st->ch), 1);
		setenv("KILN_CTL", channel__sock_path(st->ch), 1);
		snprintf(v, sizeof(v), "%d", (int)getpid());
		setenv("KILN_RECORDER_PID", v, 1);
		if (!st->o.follow)
			setenv("KILN_NO_FOLLOW", "1", 1);
		if (st->o.py_alloc)
			setenv("PYTHONMALLOC", st->o.py_alloc, 1); /* parse took only these two */
		if (st->o.py_domains)
			setenv("KILN_PYDOMAINS", "1", 1);
		if (st->o.heap_sample) {
			snprintf(v, sizeof(v), "%llu", (unsigned long long)st->o.heap_sample);
			setenv("KILN_HEAP_SAMPLE", v, 1);
		}
	}
	fflush(NULL);
	if (st->h) {
		/* told from the file now: a program that ends at once leaves
		 * nothing in /proc to tell it from afterwards */
		char *exe = find_program(st->o.argv[0]);
		st->exe_cause = exe ? preload__untracked_file(exe) : -1;
		free(exe);
	}
	pid_t pid = fork();
	if (pid < 0)
		return cli__error(CMD, "fork: %s", strerror(errno)), KILN_EXIT_RECORD_FAIL;
	if (pid == 0) {
		close(go[1]);
		close(err[0]);
		signal(SIGPIPE, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		if (st->ch) /* the heap channel is the one descriptor the program inherits */
			fcntl(channel__child_fd(st->ch), F_SETFD, 0);
		if (st->stdout_out) /* the profile stream is stdout: keep the program's output out of it */
			dup2(STDERR_FILENO, STDOUT_FILENO);
		char c;
		while (read(go[0], &c, 1) < 0 && errno == EINTR)
			;
		if (c != 'g')
			_exit(KILN_EXIT_RECORD_FAIL);
		execvp(st->o.argv[0], st->o.argv);
		int e = errno;
		write_full(err[1], &e, sizeof(e));
		_exit(e == ENOENT ? KILN_EXIT_NOTFOUND : KILN_EXIT_NOEXEC);
	}
	st->child = pid;
	close(go[0]);
	close(err[1]);
	if (st->h) {
		unsetenv("LD_PRELOAD");
		unsetenv("KILN_NO_FOLLOW");
		channel__close_child_end(st->ch);
	}
	recorder__proc(st->r, (uint32_t)pid);
	if (st->o.cpu || st->o.heap) {
		int rc = record_open_sampler(st, pid, true);
		if (rc < 0 && (st->o.cpu && !st->o.wall)) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			cli__error(CMD, "cannot sample: perf_event_open: %s%s", strerror(-rc),
				   rc == -EACCES || rc == -EPERM
					   ? " (lower /proc/sys/kernel/perf_event_paranoid, or use --wall for ptrace sampling)"
					   : "");
			return KILN_EXIT_RECORD_FAIL;
		}
	}
	write_full(go[1], "g", 1);
	close(go[1]);
	int e = 0;
	ssize_t k;
	while ((k = read(err[0], &e, sizeof(e))) < 0 && errno == EINTR)
		;
	close(err[0]);
	if (k == sizeof(e)) {
		if (st->s)
			st->ops->close(st->s);
		st->s = NULL;
		waitpid(pid, NULL, 0);
		cli__error(CMD, "cannot run %s: %s", st->o.argv[0], strerror(e));
		return e == ENOENT ? KILN_EXIT_NOTFOUND : KILN_EXIT_NOEXEC;
	}
	if (st->s)
		st->ops->start(st->s);
	return 0;
}

/* --heap -p: load the shim into the running process and take the channel. */
int record_heap_attach(struct rec *st)
{
	char *shim = shim_path();
	if (!shim) {
		cli__error(CMD, "cannot find libkiln_shim.so beside kiln (set KILN_SHIM)");
		return KILN_EXIT_ERROR;
	}
	char err[512];
	int fd;
	uint64_t t = realtime_ns();
	int rc = heapattach__start(&st->ha, (pid_t)st->o.pid, shim, getpid(), st->o.heap_sample,
				   channel__sock_path(st->ch), &fd, err, sizeof(err));
	free(shim);
	if (rc < 0) {
		cli__error(CMD, "%s", err);
		return KILN_EXIT_ERROR;
	}
	channel__adopt(st->ch, fd);
	st->heap_attached = true;
	json_t *ha = json_pack("{s:I, s:i, s:I, s:i, s:i, s:i}", "start_ns", (json_int_t)t, "slots", st->ha.slots,
			       "stopped_us", (json_int_t)(st->ha.stopped_ns / 1000), "tid", (int)st->ha.tid, "calls",
			       st->ha.calls, "kill_safe_calls", st->ha.framed);
	if (st->ha.own_malloc[0]) {
		cli__warn(CMD, "pid %ld allocates with its own malloc in %s: the calls other modules make to it are "
			       "seen, those it makes inside itself are not", st->o.pid, st->ha.own_malloc);
		json_object_set_new(ha, "own_malloc", json_string(st->ha.own_malloc));
	}
	json_object_set_new(recorder__meta(st->r), "heap_attach", ha);
	recorder__meta_changed(st->r);
	recorder__waits_ended(st->r, (uint64_t)st->ha.waits_ended);
	st->ha.waits_ended = 0; /* said */
	if (!st->o.quiet)
		fprintf(stderr, "kiln record: heap tracking attached to pid %ld: %d allocator slots hooked; thread %d "
				"was stopped %.2f ms (kill-safe calls: %d of %d); blocks allocated before now are not "
				"counted\n",
			st->o.pid, st->ha.slots, (int)st->ha.tid, (double)st->ha.stopped_ns / 1e6, st->ha.framed,
			st->ha.calls);
	return 0;
}

/* One actionable line for a refused attach. */
void record_attach_error(long pid, int rc, const struct sampler_ops *ops)
{
	char why[160];
	if (rc == -ESRCH) {
		cli__error(CMD, "pid %ld is gone (it exited while kiln attached)", pid);
	} else if ((rc == -EPERM || rc == -EACCES) && proc_traced_why((int)pid, why, sizeof(why))) {
		cli__error(CMD, "%s", why);
	} else if (rc == -EPERM || rc == -EACCES) {
		char *scope = read_small_file("/proc/sys/kernel/yama/ptrace_scope", NULL);
		if (ops == &ptrace_sampler_ops && scope && atoi(scope) > 0)
			cli__error(CMD, "cannot attach to pid %ld: yama ptrace_scope is %d; run as root or "
					"`echo 0 > /proc/sys/kernel/yama/ptrace_scope`", pid, atoi(scope));
		else
			cli__error(CMD, "cannot attach to pid %ld: permission denied (%s); it may belong to another "
					"user: run kiln as that user or as root", pid, ops ? ops->name : "?");
		free(scope);
	} else {
		cli__error(CMD, "cannot attach to pid %ld: %s", pid, strerror(-rc));
	}
}
