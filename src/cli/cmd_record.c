/* kiln record: launch a program (or attach to one) and profile it.
 *
 *   fork ─► child waits on a pipe ──────────────► exec PROGRAM
 *   parent: open samplers on the child, then "go"      │ (events enabled at exec)
 *   loop: drain sampler rings and heap rings, answer snapshot requests,
 *         flush the file each second, until the child exits (or -d, or Ctrl-C)
 *   end:  leaks and exit status into the file, END record, exit with the
 *         child's own status (128+N for a signal).
 * This file: the options and the checks before; record_start.c the launch
 * or attach, record_session.c the loop and the end (cli/record.h).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include "cli/cli.h"
#include "collect/inject.h"

#include "cli/record.h"

volatile sig_atomic_t record_got_signal, record_got_from_tty;

/* A signal from the terminal (si_code SI_KERNEL) reached the program too;
 * one sent to kiln alone (kill, SI_USER) is the program's to receive. */
static void on_signal(int sig, siginfo_t *si, void *uc)
{
	record_got_signal = sig;
	record_got_from_tty = si && si->si_code == SI_KERNEL;
}

static void help(void)
{
	printf("usage: kiln record [OPTIONS] -- PROGRAM [ARGS...]\n"
	       "       kiln record [OPTIONS] -p PID\n\n"
	       "Profile a program from launch to exit, or a running process by pid.\n\n"
	       "  -o, --output FILE        the profile file (default kiln.data)\n"
	       "  -F, --frequency HZ       samples per second per thread (default 999; 99 with --wall)\n"
	       "      --heap               also track every heap allocation (with -p: from the attach on)\n"
	       "      --no-cpu             no CPU sampling (with --heap: heap only)\n"
	       "      --wall               wall-clock sampling: sleeping threads too\n"
	       "      --gil                CPython: only samples of the thread holding the GIL (ptrace)\n"
	       "  -d, --duration SEC       stop after SEC seconds (launch mode: detach, let it run)\n"
	       "      --no-follow          do not follow forked children\n"
	       "      --no-compress        store records as they are (default: zstd, a block per flush)\n"
	       "      --snapshot-every SEC with --heap: a heap snapshot every SEC seconds\n"
	       "      --heap-sample [BYTES]\n"
	       "                           with --heap: sample allocations by bytes (Poisson, a mean of BYTES,\n"
	       "                           default 512K; K, M, G suffixes): counts and bytes become estimates,\n"
	       "                           for a fraction of the cost (production)\n"
	       "  -p, --pid PID            attach to a running process\n"
	       "      --stack-size BYTES   user stack copied per sample (default 32768)\n"
	       "      --python-allocator pymalloc|malloc\n"
	       "                           with --heap, for a launched Python: malloc (PYTHONMALLOC=malloc)\n"
	       "                           shows every object; pymalloc (Python's default) serves objects of\n"
	       "                           512 B or less from its own arenas, which the shim does not see\n"
	       "      --trace-python-allocators\n"
	       "                           with --heap, for a launched Python: wrap its object and memory\n"
	       "                           allocators (as tracemalloc and memray do): every object is seen\n"
	       "                           with pymalloc kept (about x4 of bare on allocation-heavy code)\n"
	       "  -q, --quiet              no summary line at the end\n\n"
	       "Exit status: the program's own, 128+N if signal N ended it; 125 when kiln\n"
	       "fails, 126 when PROGRAM cannot be executed, 127 when it is not found.\n");
}

enum { ROPT_HEAP = 2000, ROPT_NOCPU, ROPT_WALL, ROPT_NOFOLLOW, ROPT_SNAPEVERY, ROPT_STACKSIZE, ROPT_HELP, ROPT_PYALLOC,
       ROPT_PYDOM, ROPT_NOPYDOM, ROPT_NOCOMPRESS, ROPT_GIL, ROPT_HEAPSAMPLE };

#define HEAP_SAMPLE_DEFAULT (512u * 1024u)
#define HEAP_SAMPLE_MAX (1ull << 30)


/* What one machine can take: the kernel's perf_event_max_sample_rate, and
 * for the copies of the user stack each sample carries, about 10,000
 * samples a second of 32 KiB (beyond that the program itself slows down
 * many times: x1.2 at 10 kHz, x8 at 50 kHz, measured); a smaller
 * --stack-size allows more. ptrace stops a thread per sample: 1,000 Hz. */
#define KILN_STACK_BYTES_PER_S (10000L * 32768L)
#define KILN_PTRACE_MAX_HZ 1000L

/* --wall and --gil sample with ptrace (a thread stopped each sample). */
bool record_ptrace_sampling(const struct record_opts *o)
{
	return o->wall || o->gil;
}

static void cap_frequency(struct record_opts *o)
{
	bool pt = record_ptrace_sampling(o);
	long cap = pt ? KILN_PTRACE_MAX_HZ : KILN_STACK_BYTES_PER_S / o->stack_size;
	const char *why = pt ? "ptrace stops a thread for every sample" : "each sample copies the stack";
	char *k = pt ? NULL : read_small_file("/proc/sys/kernel/perf_event_max_sample_rate", NULL);
	long kmax = k ? atol(k) : 0;
	free(k);
	if (kmax > 0 && kmax < cap) {
		cap = kmax;
		why = "the kernel's perf_event_max_sample_rate";
	}
	if (o->freq <= cap)
		return;
	if (!o->quiet)
		fprintf(stderr, "kiln record: -F %ld is more than this machine can take (%s): sampling at %ld Hz%s\n",
			o->freq, why, cap, pt ? "" : " (a smaller --stack-size allows more)");
	o->freq = cap;
}

static int parse(int argc, char **argv, struct record_opts *o)
{
	static const struct option longopts[] = {
		{"output", required_argument, NULL, 'o'}, {"frequency", required_argument, NULL, 'F'},
		{"heap", no_argument, NULL, ROPT_HEAP}, {"no-cpu", no_argument, NULL, ROPT_NOCPU},
		{"wall", no_argument, NULL, ROPT_WALL}, {"duration", required_argument, NULL, 'd'},
		{"no-follow", no_argument, NULL, ROPT_NOFOLLOW}, {"snapshot-every", required_argument, NULL, ROPT_SNAPEVERY},
		{"pid", required_argument, NULL, 'p'}, {"stack-size", required_argument, NULL, ROPT_STACKSIZE},
		{"quiet", no_argument, NULL, 'q'}, {"help", no_argument, NULL, ROPT_HELP},
		{"python-allocator", required_argument, NULL, ROPT_PYALLOC},
		{"trace-python-allocators", no_argument, NULL, ROPT_PYDOM},
		{"no-trace-python-allocators", no_argument, NULL, ROPT_NOPYDOM},
		{"no-compress", no_argument, NULL, ROPT_NOCOMPRESS}, {"gil", no_argument, NULL, ROPT_GIL},
		{"heap-sample", optional_argument, NULL, ROPT_HEAPSAMPLE},
		{NULL, 0, NULL, 0},
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
		case ROPT_PYDOM:
			o->py_domains = true;
			break;
		case ROPT_NOPYDOM:
			o->py_domains = false;
			break;
		case ROPT_PYALLOC:
			if (strcmp(optarg, "pymalloc") && strcmp(optarg, "malloc"))
				return cli__usage(CMD, "--python-allocator takes pymalloc or malloc, not '%s'", optarg);
			o->py_alloc = optarg;
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
		case ROPT_NOCOMPRESS:
			o->no_compress = true;
			break;
		case ROPT_GIL:
			o->gil = true;
			break;
		case ROPT_HEAPSAMPLE: {
			/* --heap-sample=BYTES, --heap-sample BYTES (a next word that is a
			 * size), or --heap-sample alone (the default mean) */
			const char *v = optarg;
			if (!v && optind < argc && argv[optind][0] >= '0' && argv[optind][0] <= '9')
				v = argv[optind++];
			o->heap_sample = HEAP_SAMPLE_DEFAULT;
			if (v && !cli__parse_bytes(v, 1, HEAP_SAMPLE_MAX, &o->heap_sample))
				return cli__usage(CMD, "--heap-sample takes a mean of 1 byte to 1G (K, M, G suffixes), not '%s'",
						  v);
			break;
		}
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
	if (record_ptrace_sampling(o) && !o->freq_set)
		o->freq = 99; /* each sample stops a thread (ptrace) */
	cap_frequency(o);
	if (!o->cpu && !o->heap && !o->wall)
		return cli__usage(CMD, "--no-cpu leaves nothing to record (add --heap)");
	if (o->gil && !o->cpu && !o->wall)
		return cli__usage(CMD, "--gil keeps CPU samples of the GIL's holder: not with --no-cpu");
	if (o->py_alloc && !o->heap)
		return cli__usage(CMD, "--python-allocator needs --heap");
	if (o->py_alloc && o->pid > 0)
		return cli__usage(CMD, "--python-allocator needs launch mode: a running Python keeps the allocator it "
				       "started with");
	if (o->py_domains && !o->heap)
		return cli__usage(CMD, "--trace-python-allocators needs --heap");
	if (o->py_domains && o->pid > 0)
		return cli__usage(CMD, "--trace-python-allocators needs launch mode: wrapping a running Python's "
				       "allocators while its threads allocate would race");
	if (o->snapshot_every > 0 && !o->heap)
		return cli__usage(CMD, "--snapshot-every needs --heap");
	if (o->heap_sample && !o->heap)
		return cli__usage(CMD, "--heap-sample needs --heap");
	return 0;
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
	/* the program's working directory: Python files are shown relative to it */
	char cwd[PATH_MAX], link[64];
	ssize_t cl = -1;
	if (attach) {
		snprintf(link, sizeof(link), "/proc/%ld/cwd", o->pid);
		cl = readlink(link, cwd, sizeof(cwd) - 1);
	} else if (getcwd(cwd, sizeof(cwd))) {
		cl = (ssize_t)strlen(cwd);
	}
	if (cl > 0) {
		cwd[cl] = 0;
		json_object_set_new(m, "cwd", json_string(cwd));
	}
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
	if (o->heap_sample) /* heap figures are estimates: every reader says so */
		json_object_set_new(m, "heap_sample", json_integer((json_int_t)o->heap_sample));
	if (o->heap && !attach) {
		/* what a Python program's PYTHONMALLOC will be (said only if one runs) */
		const char *pm = o->py_alloc ? o->py_alloc : getenv("PYTHONMALLOC");
		json_object_set_new(m, "python_allocator", json_string(pm && *pm ? pm : "pymalloc"));
		json_object_set_new(m, "python_domains", json_boolean(o->py_domains));
	}
	char host[256] = "";
	gethostname(host, sizeof(host) - 1);
	json_object_set_new(m, "hostname", json_string(host));
	return m;
}

/* An existing regular file at the output is replaced only if it is a kiln
 * profile (kept as NAME.old); anything else is the user's and stays. */
static bool replaceable(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0)
		return true;
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
	char magic[8] = "";
	bool ok = fd >= 0 && read(fd, magic, 8) == 8 && !memcmp(magic, KILN_MAGIC, 8);
	if (fd >= 0)
		close(fd);
	return ok;
}

/* A file of ours into which not one byte could be written (a full disk) is
 * no profile: remove it, rather than leave an empty file behind. */
static void drop_if_empty(struct rec *st)
{
	size_t bytes = st->w ? stream_writer__bytes(st->w) : st->out_bytes;
	struct stat sb;
	if (st->out.committed && !st->out.through && bytes == 0 && stat(st->out.path, &sb) == 0 && sb.st_size == 0)
		unlink(st->out.path);
}

/* Whether a running kiln record holds the lock of the profile at path. */
static bool being_recorded(const char *path)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return false;
	struct stat st;
	bool busy = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && flock(fd, LOCK_SH | LOCK_NB) < 0 &&
		    errno == EWOULDBLOCK;
	close(fd);
	return busy;
}

const char *record_cmd = "record";

int cmd_record(int argc, char **argv)
{
	struct rec st;
	memset(&st, 0, sizeof(st));
	st.cpu_at_attach = -1;
	st.exe_cause = -1;
	st.out.fd = -1;
	int rc = parse(argc, argv, &st.o);
	if (rc)
		return rc < 0 ? 0 : rc;
	bool attach = st.o.pid > 0;
	if (attach && kill((pid_t)st.o.pid, 0) < 0 && errno == ESRCH)
		return cli__error(CMD, "no process with pid %ld", st.o.pid), KILN_EXIT_ERROR;
	if (attach && record_is_zombie(st.o.pid))
		return cli__error(CMD, "pid %ld is a zombie: it has exited and waits for its parent to reap it; "
				       "there is nothing to profile", st.o.pid), KILN_EXIT_ERROR;
	if (attach && st.o.pid == getpid())
		return cli__usage(CMD, "kiln cannot profile itself (-p %ld)", st.o.pid);
	if (attach && record_is_kernel_thread(st.o.pid))
		return cli__error(CMD, "pid %ld is a kernel thread: kiln profiles programs in user space "
				       "(perf record -a -g shows the kernel)", st.o.pid), KILN_EXIT_ERROR;
	if (attach) {
		long tgid = record_thread_group(st.o.pid);
		if (tgid > 0 && tgid != st.o.pid) {
			if (!st.o.quiet)
				fprintf(stderr, "kiln record: %ld is a thread of process %ld: recording the process "
						"(report --tid %ld shows that thread)\n", st.o.pid, tgid, st.o.pid);
			st.o.pid = tgid;
		}
	}
	uint64_t t0 = now_ns();
	if (!strcmp(st.o.output, "-")) {
		if (isatty(STDOUT_FILENO))
			return cli__usage(CMD, "-o - writes a binary profile to standard output, which is a terminal");
		st.o.output = "/dev/stdout"; /* written through */
	}
	if (cli__is_stdout(st.o.output))
		st.stdout_out = true; /* the profile is our stdout: the program's goes to stderr */
	if (!replaceable(st.o.output)) {
		cli__error(CMD, "%s exists and is not a kiln profile: not replacing it (remove it or choose "
				"another -o)", st.o.output);
		return KILN_EXIT_RECORD_FAIL;
	}
	if (being_recorded(st.o.output)) {
		cli__error(CMD, "%s is being written by another kiln record: choose another -o", st.o.output);
		return KILN_EXIT_RECORD_FAIL;
	}
	/* the output's temporary now (a read-only folder fails before the
	 * program starts); put in place only once the program runs */
	rc = safe_out__prepare(&st.out, st.o.output);
	if (rc < 0) {
		cli__error(CMD, "cannot create %s: %s", st.o.output, strerror(-rc));
		return KILN_EXIT_RECORD_FAIL;
	}
	if (!st.out.through)
		flock(st.out.fd, LOCK_EX | LOCK_NB); /* a second recorder on this -o sees it (being_recorded) */
	st.w = stream_writer__new();
	stream_writer__set_compress(st.w, !st.o.no_compress);
	if (!st.out.through)
		stream_writer__set_fd(st.w, st.out.fd);
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
		channel__remove_stale();
		st.ch = channel__new();
		if (!st.ch) {
			cli__error(CMD, "cannot set up heap tracking (a private folder and socket in /dev/shm or "
					"/tmp): %s", strerror(errno));
			rc = KILN_EXIT_RECORD_FAIL;
			goto out;
		}
		st.h = heapsrc__new(st.r);
		st.chops = (struct channel_ops){.ctx = &st, .ring = record_on_ring, .loss = record_on_loss, .snapshot = record_snapshot_bytes};
		recorder__set_heap(st.r, true, st.o.heap_sample);
	}
	struct sigaction sa = {.sa_sigaction = on_signal, .sa_flags = SA_SIGINFO};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	inject__cancel_on(&record_got_signal); /* a heap attach's calls end at kiln's SIGINT/SIGTERM */
	if (attach) {
		recorder__read_maps(st.r, (uint32_t)st.o.pid);
		rc = record_open_sampler(&st, (pid_t)st.o.pid, false);
		if (rc < 0) {
			record_attach_error(st.o.pid, rc, st.ops);
			rc = KILN_EXIT_ERROR;
			goto out;
		}
		st.ops->start(st.s);
		st.cpu_at_attach = st.ops == &perf_sampler_ops && st.o.cpu && !st.o.wall ? record_proc_cpu(st.o.pid) : -1;
		if (st.h) {
			rc = record_heap_attach(&st);
			if (rc)
				goto out;
		}
	} else {
		rc = record_launch(&st);
		if (rc)
			goto out;
	}
	if (st.child > 0) {
		/* the exec that no sampler event announces (events start at it) */
		recorder__exec(st.r, (uint32_t)st.child, path_base(st.o.argv[0]));
		if (st.h && st.exe_cause >= 0)
			recorder__heap_loss(st.r, (uint32_t)st.child, st.exe_cause, 1);
	}
	rc = record_output_ready(&st);
	if (rc < 0) {
		cli__error(CMD, "cannot write %s: %s", st.o.output, strerror(-rc));
		if (st.child > 0)
			kill(st.child, SIGKILL), waitpid(st.child, NULL, 0);
		rc = KILN_EXIT_RECORD_FAIL;
		goto out;
	}
	int status = 0;
	bool done = false;
	for (;;) {
		rc = record_loop(&st, &status, &done);
		if (rc < 0 || done || !record_got_signal || attach)
			break;
		/* Launch mode: kiln ends with the program. A signal from the
		 * terminal reached it too; one sent to kiln alone is passed on. */
		int sig = record_got_signal;
		record_got_signal = 0;
		if (!record_got_from_tty)
			kill(st.child, sig);
	}
	if (rc < 0) {
		drop_if_empty(&st);
		record_cleanup(&st);
		return KILN_EXIT_RECORD_FAIL;
	}
	rc = record_finish(&st, status, done, t0);
	if (rc < 0)
		drop_if_empty(&st);
	record_cleanup(&st);
	if (rc < 0) {
		if (rc != -EPIPE)
			cli__error(CMD, "cannot write %s: %s", st.o.output, strerror(-rc));
		return KILN_EXIT_RECORD_FAIL;
	}
	if (attach || !done)
		return 0;
	return record_wait_status(status);
out:
	record_cleanup(&st); /* removes the output's temporary, never the output */
	return rc;
}
