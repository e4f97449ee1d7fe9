/* kiln record: launch a program (or attach to one) and profile it.
 *
 *   fork ─► child waits on a pipe ──────────────► exec PROGRAM
 *   parent: open samplers on the child, then "go"      │ (events enabled at exec)
 *   loop: drain sampler rings and heap rings, answer snapshot requests,
 *         flush the file each second, until the child exits (or -d, or Ctrl-C)
 *   end:  leaks and exit status into the file, END record, exit with the
 *         child's own status (128+N for a signal).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include "cli/cli.h"
#include "collect/heapsrc.h"
#include "collect/recorder.h"
#include "collect/sampler.h"
#include "kiln/kiln.h"
#include "stream/stream.h"

#define CMD "record"

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
	got_signal = sig;
}

struct record_opts {
	const char *output;
	long freq;
	bool heap, cpu, wall, follow, quiet, freq_set;
	double duration, snapshot_every;
	long pid;
	long stack_size;
	char **argv;
};

static void help(void)
{
	printf("usage: kiln record [OPTIONS] -- PROGRAM [ARGS...]\n"
	       "       kiln record [OPTIONS] -p PID\n\n"
	       "Profile a program from launch to exit, or a running process by pid.\n\n"
	       "  -o, --output FILE        the profile file (default kiln.data)\n"
	       "  -F, --frequency HZ       samples per second per thread (default 999; 99 with --wall)\n"
	       "      --heap               also track every heap allocation (launch mode)\n"
	       "      --no-cpu             no CPU sampling (with --heap: heap only)\n"
	       "      --wall               wall-clock sampling: sleeping threads too\n"
	       "  -d, --duration SEC       stop after SEC seconds (launch mode: detach, let it run)\n"
	       "      --no-follow          do not follow forked children\n"
	       "      --snapshot-every SEC with --heap: a heap snapshot every SEC seconds\n"
	       "  -p, --pid PID            attach to a running process\n"
	       "      --stack-size BYTES   user stack copied per sample (default 32768)\n"
	       "  -q, --quiet              no summary line at the end\n\n"
	       "Exit status: the program's own, 128+N if signal N ended it; 125 when kiln\n"
	       "fails, 126 when PROGRAM cannot be executed, 127 when it is not found.\n");
}

enum { ROPT_HEAP = 2000, ROPT_NOCPU, ROPT_WALL, ROPT_NOFOLLOW, ROPT_SNAPEVERY, ROPT_STACKSIZE, ROPT_HELP };

static int parse(int argc, char **argv, struct record_opts *o)
{
	static const struct option longopts[] = {
		{"output", required_argument, NULL, 'o'}, {"frequency", required_argument, NULL, 'F'},
		{"heap", no_argument, NULL, ROPT_HEAP}, {"no-cpu", no_argument, NULL, ROPT_NOCPU},
		{"wall", no_argument, NULL, ROPT_WALL}, {"duration", required_argument, NULL, 'd'},
		{"no-follow", no_argument, NULL, ROPT_NOFOLLOW}, {"snapshot-every", required_argument, NULL, ROPT_SNAPEVERY},
		{"pid", required_argument, NULL, 'p'}, {"stack-size", required_argument, NULL, ROPT_STACKSIZE},
		{"quiet", no_argument, NULL, 'q'}, {"help", no_argument, NULL, ROPT_HELP}, {NULL, 0, NULL, 0},
	};
	memset(o, 0, sizeof(*o));
	o->output = "kiln.data";
	o->freq = 999;
	o->cpu = o->follow = true;
	o->pid = -1;
	o->stack_size = 32768;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+o:F:d:p:q", longopts, NULL)) != -1) {
		switch (c) {
		case 'o':
			o->output = optarg;
			break;
		case 'F':
			o->freq_set = true;
			if (!cli__parse_long(optarg, 1, 100000, &o->freq))
				return cli__usage(CMD, "-F takes a frequency from 1 to 100000 Hz, not '%s'", optarg);
			break;
		case ROPT_HEAP:
			o->heap = true;
			break;
		case ROPT_NOCPU:
			o->cpu = false;
			break;
		case ROPT_WALL:
			o->wall = true;
			break;
		case 'd':
			if (!cli__parse_double(optarg, 0.001, 1e7, &o->duration))
				return cli__usage(CMD, "-d takes a positive number of seconds, not '%s'", optarg);
			break;
		case ROPT_NOFOLLOW:
			o->follow = false;
			break;
		case ROPT_SNAPEVERY:
			if (!cli__parse_double(optarg, 0.01, 1e7, &o->snapshot_every))
				return cli__usage(CMD, "--snapshot-every takes a positive number of seconds, not '%s'",
						  optarg);
			break;
		case 'p':
			if (!cli__parse_long(optarg, 1, INT_MAX, &o->pid))
				return cli__usage(CMD, "-p takes a process id (a positive number), not '%s'", optarg);
			break;
		case ROPT_STACKSIZE:
			if (!cli__parse_long(optarg, 1024, 65528, &o->stack_size))
				return cli__usage(CMD, "--stack-size takes 1024 to 65528 bytes, not '%s'", optarg);
			o->stack_size &= ~7L;
			break;
		case 'q':
			o->quiet = true;
			break;
		case ROPT_HELP:
			help();
			return -1;
		case '?':
		default:
			if (optopt)
				return cli__usage(CMD, "option '-%c' is unknown or lacks its value", optopt);
			return cli__usage(CMD, "option '%s' is unknown or lacks its value", argv[optind - 1]);
		}
	}
	o->argv = argv + optind;
	if (o->pid > 0 && o->argv[0])
		return cli__usage(CMD, "give either -p PID or a PROGRAM, not both");
	if (o->pid < 0 && !o->argv[0])
		return cli__usage(CMD, "no PROGRAM to launch (kiln record -- PROGRAM [ARGS]) and no -p PID");
	if (o->wall && !o->freq_set)
		o->freq = 99; /* each sample stops a thread for ~10-50 us */
	if (!o->cpu && !o->heap && !o->wall)
		return cli__usage(CMD, "--no-cpu leaves nothing to record (add --heap)");
	if (o->heap && o->pid > 0)
		return cli__usage(CMD, "--heap needs launch mode: the shim must be preloaded at start");
	if (o->snapshot_every > 0 && !o->heap)
		return cli__usage(CMD, "--snapshot-every needs --heap");
	return 0;
}

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

static json_t *make_meta(const struct record_opts *o, bool attach)
{
	json_t *m = json_object();
	json_object_set_new(m, "kind", json_string("profile"));
	json_object_set_new(m, "kiln_version", json_string(KILN_VERSION));
	json_object_set_new(m, "format_version", json_integer(1));
	json_object_set_new(m, "mode", json_string(attach ? "attach" : "launch"));
	json_t *argv = json_array();
	for (char **a = o->argv; a && *a; a++)
		json_array_append_new(argv, json_string(*a));
	json_object_set_new(m, "argv", argv);
	json_object_set_new(m, "start_ns", json_integer((json_int_t)realtime_ns()));
	json_object_set_new(m, "frequency", json_integer(o->freq));
	json_t *ev = json_array();
	if (o->cpu && !o->wall)
		json_array_append_new(ev, json_string("cpu"));
	if (o->wall)
		json_array_append_new(ev, json_string("wall"));
	if (o->heap)
		json_array_append_new(ev, json_string("heap"));
	json_object_set_new(m, "events", ev);
	char host[256] = "";
	gethostname(host, sizeof(host) - 1);
	json_object_set_new(m, "hostname", json_string(host));
	return m;
}

/* The control socket `kiln snapshot PID` talks to, named in the program's
 * environment as KILN_CTL (an abstract unix socket). */
static int ctl_listen(char *name, size_t n)
{
	snprintf(name, n, "kiln-ctl-%d-%llu", (int)getpid(), (unsigned long long)(now_ns() % 1000000007ull));
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	size_t len = strlen(name);
	memcpy(a.sun_path + 1, name, len);
	if (bind(fd, (struct sockaddr *)&a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len)) < 0 ||
	    listen(fd, 8) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

struct rec {
	struct record_opts o;
	struct recorder *r;
	struct stream_writer *w;
	const struct sampler_ops *ops;
	struct sampler *s;
	struct heapsrc *h;
	int ctl;
	unsigned snapshots;
	pid_t child;
};

static void snapshot_to(struct rec *st, pid_t pid, const char *path, int reply_fd)
{
	heapsrc__poll(st->h);
	int rc = recorder__write_snapshot(st->r, (uint32_t)pid, path);
	char msg[4200];
	if (rc == 0)
		snprintf(msg, sizeof(msg), "ok %s\n", path);
	else
		snprintf(msg, sizeof(msg), "error cannot write %s: %s\n", path, strerror(-rc));
	if (reply_fd >= 0)
		write_full(reply_fd, msg, strlen(msg));
	else if (rc < 0)
		cli__warn(CMD, "snapshot %s: %s", path, strerror(-rc));
}

static void ctl_serve(struct rec *st)
{
	int fd = accept4(st->ctl, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	struct pollfd p = {fd, POLLIN, 0};
	char req[4200];
	size_t n = 0;
	while (n < sizeof(req) - 1 && poll(&p, 1, 500) > 0) {
		ssize_t k = read(fd, req + n, sizeof(req) - 1 - n);
		if (k <= 0)
			break;
		n += (size_t)k;
		if (memchr(req, '\n', n))
			break;
	}
	req[n] = 0;
	req[strcspn(req, "\n")] = 0;
	long pid;
	char path[4097];
	if (sscanf(req, "snapshot %ld %4096[^\n]", &pid, path) == 2)
		snapshot_to(st, (pid_t)pid, path, fd);
	else
		write_full(fd, "error bad request\n", 18);
	close(fd);
}

static int wait_status_code(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return KILN_EXIT_RECORD_FAIL;
}

static void summary(struct rec *st, double secs, const char *what)
{
	if (st->o.quiet)
		return;
	char size[32];
	fmt_bytes(size, sizeof(size), (double)stream_writer__bytes(st->w));
	fprintf(stderr, "kiln record: %s %.2f s, %llu samples%s; wrote %s (%s)\n", what, secs,
		(unsigned long long)recorder__samples(st->r), st->o.heap ? " and the heap" : "", st->o.output, size);
}

static bool is_zombie(long pid)
{
	char st = proc_state((int)pid, 0);
	return st == 'Z' || st == 'X';
}

/* The record loop shared by launch and attach. Returns when the target is
 * gone (child reaped: *status set), the duration passed, or on a signal. */
static int record_loop(struct rec *st, int *status, bool *child_done)
{
	/* the header at once: a recorder killed in its first second still
	 * leaves a valid (if empty) profile */
	int frc = recorder__flush(st->r);
	if (frc < 0) {
		cli__error(CMD, "cannot write %s: %s", st->o.output, strerror(-frc));
		return frc;
	}
	uint64_t start = now_ns(), last_flush = start, last_snap = start;
	uint64_t dur = st->o.duration > 0 ? (uint64_t)(st->o.duration * 1e9) : 0;
	for (;;) {
		if (st->s)
			st->ops->read(st->s, st->h ? 5 : 50);
		else
			usleep(st->h ? 2000 : 50000);
		if (st->h)
			heapsrc__poll(st->h);
		if (st->ctl >= 0)
			ctl_serve(st);
		uint64_t now = now_ns();
		if (st->child > 0) {
			/* only its end: a traced child also reports stops, which are
			 * the ptrace sampler's to handle */
			siginfo_t si;
			memset(&si, 0, sizeof(si));
			if (waitid(P_PID, (id_t)st->child, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == st->child) {
				waitpid(st->child, status, 0);
				*child_done = true;
				return 0;
			}
		} else if ((kill((pid_t)st->o.pid, 0) < 0 && errno == ESRCH) || is_zombie(st->o.pid)) {
			*child_done = true;
			return 0;
		}
		if (got_signal)
			return 0;
		if (dur && now - start >= dur)
			return 0;
		if (st->o.snapshot_every > 0 && now - last_snap >= (uint64_t)(st->o.snapshot_every * 1e9)) {
			char path[4200];
			snprintf(path, sizeof(path), "%s.snap.%u", st->o.output, ++st->snapshots);
			snapshot_to(st, st->child, path, -1);
			last_snap = now;
		}
		if (now - last_flush >= 500000000ull) {
			int rc = recorder__flush(st->r);
			if (rc < 0) {
				cli__error(CMD, "cannot write %s: %s; stopped recording (the program runs on)",
					   st->o.output, strerror(-rc));
				return rc;
			}
			last_flush = now;
		}
	}
}

static int finish(struct rec *st, int status, bool child_done, uint64_t t0)
{
	if (st->s) {
		st->ops->stop(st->s);
		st->ops->read(st->s, 0);
	}
	if (st->h)
		heapsrc__poll(st->h);
	pid_t main_pid = st->child > 0 ? st->child : (pid_t)st->o.pid;
	if (child_done)
		recorder__exit(st->r, (uint32_t)main_pid, st->child > 0 ? status : -1);
	if (st->h) {
		heapsrc__finish(st->h);
		if (!heapsrc__seen(st->h))
			cli__warn(CMD, "no heap activity was seen: %s is statically linked, has its own malloc, "
				       "or never allocated; kiln tracks calls into the system allocator only",
				  st->o.pid > 0 ? "the program" : st->o.argv[0]);
	}
	int rc = recorder__finish(st->r);
	double secs = (double)(now_ns() - t0) / 1e9;
	if (rc == 0)
		summary(st, secs, child_done ? "recorded" : "recorded (detached)");
	int wrc = stream_writer__free(st->w);
	st->w = NULL;
	if (rc == 0)
		rc = wrc;
	return rc;
}

static void cleanup(struct rec *st)
{
	if (st->s)
		st->ops->close(st->s);
	heapsrc__free(st->h);
	recorder__free(st->r);
	if (st->w)
		stream_writer__free(st->w);
	if (st->ctl >= 0)
		close(st->ctl);
}

/* perf_event first; ptrace for --wall and where perf_event is refused. */
static int open_sampler(struct rec *st, pid_t pid, bool launch)
{
	struct sampler_opts so = {
		.pid = pid, .launch = launch, .follow = st->o.follow, .cpu = st->o.cpu && !st->o.wall,
		.wall = st->o.wall, .freq = (int)st->o.freq, .stack_size = (uint32_t)st->o.stack_size,
	};
	int rc = -EACCES;
	if (!st->o.wall) {
		st->ops = &perf_sampler_ops;
		/* KILN_FORCE_PTRACE=1: behave as where perf_event_open is refused
		 * (containers, perf_event_paranoid); the tests use it */
		const char *force = getenv("KILN_FORCE_PTRACE");
		rc = force && *force == '1' && so.cpu ? -EACCES : st->ops->open(&st->s, &so, st->r);
		if (rc == 0 || (rc != -EACCES && rc != -EPERM && rc != -ENOSYS && rc != -ENOENT) || !so.cpu)
			goto out;
		char *par = read_small_file("/proc/sys/kernel/perf_event_paranoid", NULL);
		cli__warn(CMD, "perf_event_open refused (%s; perf_event_paranoid=%s): sampling with ptrace instead",
			  strerror(-rc), par ? strtok(par, "\n") : "?");
		free(par);
	}
	st->ops = &ptrace_sampler_ops;
	rc = st->ops->open(&st->s, &so, st->r);
out:
	if (rc < 0)
		st->s = NULL;
	return rc;
}

static int launch(struct rec *st)
{
	int go[2], err[2];
	if (pipe2(go, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0)
		return cli__error(CMD, "pipe: %s", strerror(errno)), KILN_EXIT_RECORD_FAIL;
	char ctlname[108] = "";
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
		setenv("KILN_SHM", heapsrc__dir(st->h), 1);
		char rp[32];
		snprintf(rp, sizeof(rp), "%d", (int)getpid());
		setenv("KILN_RECORDER_PID", rp, 1);
		if (!st->o.follow)
			setenv("KILN_NO_FOLLOW", "1", 1);
		st->ctl = ctl_listen(ctlname, sizeof(ctlname));
		if (st->ctl >= 0)
			setenv("KILN_CTL", ctlname, 1);
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return cli__error(CMD, "fork: %s", strerror(errno)), KILN_EXIT_RECORD_FAIL;
	if (pid == 0) {
		close(go[1]);
		close(err[0]);
		signal(SIGPIPE, SIG_DFL);
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
	}
	recorder__proc(st->r, (uint32_t)pid);
	if (st->o.cpu || st->o.heap) {
		int rc = open_sampler(st, pid, true);
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

/* One actionable line for a refused attach. */
static void attach_error(long pid, int rc, const struct sampler_ops *ops)
{
	if (rc == -ESRCH) {
		cli__error(CMD, "pid %ld is gone (it exited while kiln attached)", pid);
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

int cmd_record(int argc, char **argv)
{
	struct rec st;
	memset(&st, 0, sizeof(st));
	st.ctl = -1;
	int rc = parse(argc, argv, &st.o);
	if (rc)
		return rc < 0 ? 0 : rc;
	bool attach = st.o.pid > 0;
	if (attach && kill((pid_t)st.o.pid, 0) < 0 && errno == ESRCH)
		return cli__error(CMD, "no process with pid %ld", st.o.pid), KILN_EXIT_ERROR;
	if (attach && is_zombie(st.o.pid))
		return cli__error(CMD, "pid %ld is a zombie: it has exited and waits for its parent to reap it; "
				       "there is nothing to profile", st.o.pid), KILN_EXIT_ERROR;
	if (attach && st.o.pid == getpid())
		return cli__usage(CMD, "kiln cannot profile itself (-p %ld)", st.o.pid);
	uint64_t t0 = now_ns();
	st.w = stream_writer__new(st.o.output);
	if (!st.w) {
		cli__error(CMD, "cannot create %s: %s", st.o.output, strerror(errno));
		return KILN_EXIT_RECORD_FAIL;
	}
	json_t *meta = make_meta(&st.o, attach);
	if (attach) {
		char path[64];
		snprintf(path, sizeof(path), "/proc/%ld/exe", st.o.pid);
		char exe[PATH_MAX];
		ssize_t n = readlink(path, exe, sizeof(exe) - 1);
		if (n > 0) {
			exe[n] = 0;
			json_object_set_new(meta, "program", json_string(exe));
		}
	} else {
		json_object_set_new(meta, "program", json_string(st.o.argv[0]));
	}
	st.r = recorder__new(st.w, meta);
	json_decref(meta);
	if (st.o.heap) {
		st.h = heapsrc__new(st.r);
		if (!st.h) {
			cli__error(CMD, "cannot set up heap tracking in /dev/shm: %s", strerror(errno));
			rc = KILN_EXIT_RECORD_FAIL;
			goto out_unlink;
		}
	}
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	if (attach) {
		recorder__read_maps(st.r, (uint32_t)st.o.pid);
		rc = open_sampler(&st, (pid_t)st.o.pid, false);
		if (rc < 0) {
			attach_error(st.o.pid, rc, st.ops);
			rc = KILN_EXIT_ERROR;
			goto out_unlink;
		}
		st.ops->start(st.s);
	} else {
		rc = launch(&st);
		if (rc)
			goto out_unlink;
	}
	int status = 0, nsig = 0;
	bool done = false;
	for (;;) {
		rc = record_loop(&st, &status, &done);
		if (rc < 0 || done || !got_signal || attach)
			break;
		/* Launch mode: the terminal's Ctrl-C reached the program too; pass on
		 * what was sent to kiln alone, and stop at a second signal. */
		int sig = got_signal;
		got_signal = 0;
		if (sig != SIGINT)
			kill(st.child, sig);
		if (++nsig >= 2)
			break;
	}
	if (rc < 0) {
		cleanup(&st);
		return KILN_EXIT_RECORD_FAIL;
	}
	rc = finish(&st, status, done, t0);
	cleanup(&st);
	if (rc < 0) {
		cli__error(CMD, "cannot write %s: %s", st.o.output, strerror(-rc));
		return KILN_EXIT_RECORD_FAIL;
	}
	if (attach || !done)
		return 0;
	return wait_status_code(status);
out_unlink:
	cleanup(&st);
	unlink(st.o.output);
	return rc;
}
