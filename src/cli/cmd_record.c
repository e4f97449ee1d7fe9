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
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include "cli/cli.h"
#include "stream/format.h"
#include "collect/channel.h"
#include "collect/heapattach.h"
#include "collect/heapsrc.h"
#include "collect/inject.h"
#include "collect/preload.h"
#include "collect/recorder.h"
#include "symbols/image.h"
#include "collect/sampler.h"
#include "kiln/kiln.h"
#include "stream/stream.h"
#include "util/safefile.h"

#define CMD "record"

static volatile sig_atomic_t got_signal, got_from_tty;

/* A signal from the terminal (si_code SI_KERNEL) reached the program too;
 * one sent to kiln alone (kill, SI_USER) is the program's to receive. */
static void on_signal(int sig, siginfo_t *si, void *uc)
{
	got_signal = sig;
	got_from_tty = si && si->si_code == SI_KERNEL;
}

struct record_opts {
	const char *output;
	long freq;
	bool heap, cpu, wall, follow, quiet, freq_set, no_compress, gil;
	double duration, snapshot_every;
	const char *py_alloc; /* --python-allocator: NULL leaves the program's own choice */
	bool py_domains;      /* trace Python's allocator domains (--no-trace-python-allocators: off) */
	uint64_t heap_sample; /* --heap-sample: mean bytes between sampled allocations; 0: every one */
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
static bool ptrace_sampling(const struct record_opts *o)
{
	return o->wall || o->gil;
}

static void cap_frequency(struct record_opts *o)
{
	bool pt = ptrace_sampling(o);
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
	if (ptrace_sampling(o) && !o->freq_set)
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

struct rec {
	struct record_opts o;
	struct recorder *r;
	struct stream_writer *w;
	struct safe_out out;
	bool out_ready;       /* the output is in place (the program runs) */
	bool out_waiting;     /* a FIFO with no reader yet: records wait in memory */
	const struct sampler_ops *ops;
	struct sampler *s;
	struct heapsrc *h;
	struct channel *ch;
	struct channel_ops chops;
	unsigned snapshots;
	pid_t child;
	int exe_cause; /* why the launched program cannot carry the shim, or -1 */
	bool stdout_out; /* -o -: the profile is kiln's stdout */
	bool warned_lost;
	size_t out_bytes; /* written when the writer was freed */
	struct heapattach ha; /* --heap -p: the shim loaded into the running process */
	bool heap_attached;
};

/* A snapshot of pid as the bytes of a profile file. */
static int snapshot_bytes(void *ctx, uint32_t pid, struct buf *out)
{
	struct rec *st = ctx;
	heapsrc__poll(st->h);
	struct stream_writer *w = stream_writer__new();
	int rc = recorder__snapshot(st->r, pid, w);
	if (rc == 0) {
		size_t len;
		const void *p = stream_writer__pending(w, &len);
		buf__put(out, p, len);
	}
	stream_writer__free(w);
	return rc;
}

static void on_ring(void *ctx, const struct kiln_msg *m, int fd)
{
	heapsrc__add_ring(((struct rec *)ctx)->h, m, fd);
}

static void on_loss(void *ctx, const struct kiln_msg *m)
{
	heapsrc__loss(((struct rec *)ctx)->h, m);
}

/* --snapshot-every: OUTPUT.snap.N, written whole (or not at all). */
static void snapshot_file(struct rec *st, const char *path)
{
	struct buf b;
	buf__init(&b);
	struct safe_out o;
	int rc = snapshot_bytes(st, st->child > 0 ? (uint32_t)st->child : (uint32_t)st->o.pid, &b);
	if (rc == 0)
		rc = safe_out__prepare(&o, path);
	if (rc == 0) {
		rc = safe_out__open_through(&o, true);
		if (rc == 0)
			rc = write_full(o.fd, b.data, b.len);
		if (rc == 0)
			rc = safe_out__commit(&o, false);
		int crc = safe_out__close(&o);
		if (rc == 0)
			rc = crc;
	}
	if (rc < 0)
		cli__warn(CMD, "snapshot %s: %s", path, strerror(-rc));
	buf__release(&b);
}

/* Put the output in place once the program runs: a regular file's
 * temporary is renamed over it (an older profile kept as NAME.old); a FIFO,
 * device or stdout is opened then (a FIFO with no reader yet is retried
 * from the loop while records wait in memory). 0 or -errno. */
static int output_ready(struct rec *st)
{
	if (st->out_ready)
		return 0;
	int rc = st->out.through ? safe_out__open_through(&st->out, true) : safe_out__commit(&st->out, true);
	if (rc == -ENXIO) { /* a FIFO nobody reads yet */
		if (!st->out_waiting && !st->o.quiet)
			cli__warn(CMD, "%s: waiting for a reader (records are kept until then)", st->o.output);
		st->out_waiting = true;
		return 0;
	}
	if (rc < 0)
		return rc;
	stream_writer__set_fd(st->w, st->out.fd);
	st->out_ready = true;
	return 0;
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
	char size[32], lost[96] = "", hlost[96] = "";
	fmt_bytes(size, sizeof(size), (double)stream_writer__bytes(st->w));
	uint64_t sl = recorder__lost_samples(st->r), hl = st->o.heap ? recorder__heap_lost(st->r) : 0;
	if (sl)
		snprintf(lost, sizeof(lost), " (%llu samples LOST)", (unsigned long long)sl);
	if (hl)
		snprintf(hlost, sizeof(hlost), " (%llu heap events LOST: see the report)", (unsigned long long)hl);
	fprintf(stderr, "kiln record: %s %.2f s, %llu samples%s%s%s; wrote %s (%s)\n", what, secs,
		(unsigned long long)recorder__samples(st->r), lost, st->o.heap ? " and the heap" : "", hlost,
		st->o.output, size);
	/* a Python kiln does not read, or cannot read at each sample, is said now too */
	json_t *meta = recorder__meta(st->r), *v;
	size_t i;
	json_array_foreach(json_object_get(meta, "python_notices"), i, v)
		fprintf(stderr, "kiln record: python: %s\n", json_string_value(v));
	const char *nobpf = json_string_value(json_object_get(meta, "python_frames_unavailable"));
	if (nobpf && json_object_size(json_object_get(meta, "python")))
		fprintf(stderr, "kiln record: python: Python frames not caught at each sample: %s; those samples are "
				"shown as [python frames unreadable] (--wall reads them with ptrace)\n", nobpf);
}

/* PF_KTHREAD in /proc/PID/stat's flags (field 9). */
static bool is_kernel_thread(long pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	char *st = read_small_file(path, NULL);
	if (!st)
		return false;
	char *rp = strrchr(st, ')');
	unsigned long flags = 0;
	bool ok = rp && sscanf(rp + 1, " %*c %*d %*d %*d %*d %*d %lu", &flags) == 1;
	free(st);
	return ok && (flags & 0x00200000UL);
}

/* The process (Tgid) a thread id belongs to, or -1. */
static long thread_group(long tid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%ld/status", tid);
	char *s = read_small_file(path, NULL);
	char *t = s ? strstr(s, "\nTgid:") : NULL;
	long tgid = t ? strtol(t + 6, NULL, 10) : -1;
	free(s);
	return tgid;
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
		/* at least every 2 ms with a heap (its timeline), 10 ms without */
		if (st->s)
			st->ops->read(st->s, st->h ? 2 : 10);
		else
			usleep(st->h ? 2000 : 10000);
		if (st->ch)
			channel__poll(st->ch, &st->chops);
		if (st->h)
			heapsrc__poll(st->h);
		recorder__tick(st->r);
		if (st->out_waiting && !st->out_ready) {
			int orc = output_ready(st);
			if (orc < 0) {
				cli__error(CMD, "cannot write %s: %s", st->o.output, strerror(-orc));
				return orc;
			}
		}
		uint64_t now = now_ns();
		if (st->child > 0) {
			/* only its end: a traced child also reports stops, which are
			 * the ptrace sampler's to handle */
			siginfo_t si;
			memset(&si, 0, sizeof(si));
			/* a traced child reports its stops here too: only an exit,
			 * told by si_code, ends the recording */
			if (waitid(P_PID, (id_t)st->child, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == st->child &&
			    (si.si_code == CLD_EXITED || si.si_code == CLD_KILLED || si.si_code == CLD_DUMPED)) {
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
			snapshot_file(st, path);
			last_snap = now;
		}
		if (now - last_flush >= 500000000ull) {
			uint64_t lost = recorder__lost_samples(st->r);
			if (lost && !st->warned_lost && !st->o.quiet) {
				cli__warn(CMD, "samples are being lost (%llu so far): the recorder cannot keep up at -F %ld; "
					       "the summary and the report count them", (unsigned long long)lost, st->o.freq);
				st->warned_lost = true;
			}
			int rc = recorder__flush(st->r);
			if (rc < 0) {
				cli__error(CMD, "cannot write %s: %s; stopped recording (the program runs on); the file "
						"holds the %.1f s before, %zu bytes of records were lost",
					   st->o.output, strerror(-rc), (double)(now - start) / 1e9,
					   stream_writer__lost(st->w));
				return rc;
			}
			last_flush = now;
		}
	}
}

/* --heap -p: put the program's allocator slots back before the last drain
 * (what the shim published until then is still read). */
static void heap_detach(struct rec *st, bool gone)
{
	if (!st->heap_attached)
		return;
	st->heap_attached = false;
	json_t *ha = json_object_get(recorder__meta(st->r), "heap_attach");
	if (gone) {
		json_object_set_new(ha, "detached", json_string("the process exited"));
		return;
	}
	char err[512];
	if (heapattach__stop(&st->ha, err, sizeof(err)) < 0) {
		cli__warn(CMD, "%s; the program stops recording by itself once it sees kiln gone", err);
		json_object_set_new(ha, "detached", json_string("failed"));
		return;
	}
	json_object_set_new(ha, "detached", json_string("slots restored"));
	json_object_set_new(ha, "detach_stopped_us", json_integer((json_int_t)(st->ha.detach_stopped_ns / 1000)));
	if (!st->o.quiet)
		fprintf(stderr, "kiln record: heap tracking detached from pid %ld (slots restored; thread %d stopped %.2f ms)\n",
			st->o.pid, (int)st->ha.tid, (double)st->ha.detach_stopped_ns / 1e6);
}

static int finish(struct rec *st, int status, bool child_done, uint64_t t0)
{
	heap_detach(st, child_done);
	if (st->s) {
		st->ops->stop(st->s);
		st->ops->read(st->s, 0);
	}
	if (st->ch)
		channel__poll(st->ch, &st->chops);
	if (st->h)
		heapsrc__poll(st->h);
	pid_t main_pid = st->child > 0 ? st->child : (pid_t)st->o.pid;
	if (child_done)
		recorder__exit(st->r, (uint32_t)main_pid, st->child > 0 ? status : -1);
	if (st->h) {
		heapsrc__finish(st->h);
		json_t *ha = json_object_get(recorder__meta(st->r), "heap_attach");
		if (ha)
			json_object_set_new(ha, "frees_before",
					    json_integer((json_int_t)recorder__unknown_frees(st->r, (uint32_t)main_pid)));
		recorder__meta_changed(st->r);
		size_t it = 0;
		uint32_t upid;
		const char *comm;
		int cause, untracked = 0;
		while (recorder__untracked(st->r, &it, &upid, &comm, &cause)) {
			cli__warn(CMD, "the heap of %s (pid %u) was not tracked: %s", comm, upid, kiln_heap_loss__why(cause));
			untracked++;
		}
		if (!heapsrc__seen(st->h) && !untracked && !st->ha.own_malloc[0])
			cli__warn(CMD, "no heap activity was seen: %s never called the system allocator "
				       "(or has one of its own, which kiln does not see)",
				  st->o.pid > 0 ? "the program" : st->o.argv[0]);
	}
	if (!st->out_ready) {
		/* a FIFO nobody has opened yet: wait for its reader now (Ctrl-C
		 * gives up: open is interrupted, the handler has no SA_RESTART) */
		int orc = safe_out__open_through(&st->out, false);
		if (orc < 0) {
			cli__error(CMD, "%s: no reader opened it (%s); the profile was not written", st->o.output,
				   strerror(-orc));
			return -EPIPE;
		}
		stream_writer__set_fd(st->w, st->out.fd);
		st->out_ready = true;
	}
	double secs = (double)(now_ns() - t0) / 1e9; /* recording, not the symbolizing after it */
	if (st->s && st->ops->report)
		st->ops->report(st->s);
	int rc = recorder__finish(st->r);
	if (rc == 0)
		summary(st, secs, child_done ? "recorded" : "recorded (detached)");
	st->out_bytes = stream_writer__bytes(st->w);
	int wrc = stream_writer__free(st->w);
	if (wrc < 0) /* the last flush failed: what reached the file */
		st->out_bytes = 0;
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
	channel__free(st->ch);
	recorder__free(st->r);
	if (st->w)
		stream_writer__free(st->w);
	safe_out__close(&st->out); /* removes only a temporary never put in place */
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

static bool python_named(const char *path)
{
	const char *b = path_base(path);
	return !strncmp(b, "python", 6) || !strncmp(b, "libpython", 9);
}

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
				yes = python_named(at);
			}
		}
		if (f)
			fclose(f);
		return yes;
	}
	if (!st->o.argv || !st->o.argv[0])
		return false;
	if (python_named(st->o.argv[0]))
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
static int open_sampler(struct rec *st, pid_t pid, bool launch)
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
	if (!ptrace_sampling(&st->o)) {
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

static int launch(struct rec *st)
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

/* --heap -p: load the shim into the running process and take the channel. */
static int heap_attach(struct rec *st)
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
	json_t *ha = json_pack("{s:I, s:i, s:I, s:i}", "start_ns", (json_int_t)t, "slots", st->ha.slots, "stopped_us",
			       (json_int_t)(st->ha.stopped_ns / 1000), "tid", (int)st->ha.tid);
	if (st->ha.own_malloc[0]) {
		cli__warn(CMD, "pid %ld allocates with its own malloc in %s: the calls other modules make to it are "
			       "seen, those it makes inside itself are not", st->o.pid, st->ha.own_malloc);
		json_object_set_new(ha, "own_malloc", json_string(st->ha.own_malloc));
	}
	json_object_set_new(recorder__meta(st->r), "heap_attach", ha);
	recorder__meta_changed(st->r);
	if (!st->o.quiet)
		fprintf(stderr, "kiln record: heap tracking attached to pid %ld: %d allocator slots hooked; thread %d "
				"was stopped %.2f ms; blocks allocated before now are not counted\n",
			st->o.pid, st->ha.slots, (int)st->ha.tid, (double)st->ha.stopped_ns / 1e6);
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

int cmd_record(int argc, char **argv)
{
	struct rec st;
	memset(&st, 0, sizeof(st));
	st.exe_cause = -1;
	st.out.fd = -1;
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
	if (attach && is_kernel_thread(st.o.pid))
		return cli__error(CMD, "pid %ld is a kernel thread: kiln profiles programs in user space "
				       "(perf record -a -g shows the kernel)", st.o.pid), KILN_EXIT_ERROR;
	if (attach) {
		long tgid = thread_group(st.o.pid);
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
		st.chops = (struct channel_ops){.ctx = &st, .ring = on_ring, .loss = on_loss, .snapshot = snapshot_bytes};
		recorder__set_heap(st.r, true, st.o.heap_sample);
	}
	struct sigaction sa = {.sa_sigaction = on_signal, .sa_flags = SA_SIGINFO};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	inject__cancel_on(&got_signal); /* a heap attach's calls end at kiln's SIGINT/SIGTERM */
	if (attach) {
		recorder__read_maps(st.r, (uint32_t)st.o.pid);
		rc = open_sampler(&st, (pid_t)st.o.pid, false);
		if (rc < 0) {
			attach_error(st.o.pid, rc, st.ops);
			rc = KILN_EXIT_ERROR;
			goto out;
		}
		st.ops->start(st.s);
		if (st.h) {
			rc = heap_attach(&st);
			if (rc)
				goto out;
		}
	} else {
		rc = launch(&st);
		if (rc)
			goto out;
	}
	if (st.child > 0) {
		/* the exec that no sampler event announces (events start at it) */
		recorder__exec(st.r, (uint32_t)st.child, path_base(st.o.argv[0]));
		if (st.h && st.exe_cause >= 0)
			recorder__heap_loss(st.r, (uint32_t)st.child, st.exe_cause, 1);
	}
	rc = output_ready(&st);
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
		if (rc < 0 || done || !got_signal || attach)
			break;
		/* Launch mode: kiln ends with the program. A signal from the
		 * terminal reached it too; one sent to kiln alone is passed on. */
		int sig = got_signal;
		got_signal = 0;
		if (!got_from_tty)
			kill(st.child, sig);
	}
	if (rc < 0) {
		drop_if_empty(&st);
		cleanup(&st);
		return KILN_EXIT_RECORD_FAIL;
	}
	rc = finish(&st, status, done, t0);
	if (rc < 0)
		drop_if_empty(&st);
	cleanup(&st);
	if (rc < 0) {
		if (rc != -EPIPE)
			cli__error(CMD, "cannot write %s: %s", st.o.output, strerror(-rc));
		return KILN_EXIT_RECORD_FAIL;
	}
	if (attach || !done)
		return 0;
	return wait_status_code(status);
out:
	cleanup(&st); /* removes the output's temporary, never the output */
	return rc;
}
