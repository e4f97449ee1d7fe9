/* kiln top: a running process's busiest functions, live, as py-spy top and
 * perf top show them. A child of kiln's records the process (kiln record
 * -p, into a private folder, flushed every 0.5 s); every interval kiln top
 * reads what has been written, cuts the last interval out of it (the time
 * windows --time uses) and prints its table: on a terminal in place, else
 * one table after the other (for scripts). Ctrl-C, -d or the process's end
 * stops it; the recording detaches as kiln record -p does. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "aggregate/profile.h"
#include "aggregate/view.h"
#include "cli/cli.h"
#include "cli/record.h"
#include "export/export.h"
#include "util/util.h"

#undef CMD
#define CMD "top"

static void help(void)
{
	printf("usage: kiln top PID [OPTIONS]\n\n"
	       "A running process's busiest functions, now: every interval, the table of\n"
	       "the samples taken in it (as py-spy top and perf top show them). The\n"
	       "process is sampled as kiln record -p samples it, and keeps running.\n\n"
	       "  -i, --interval SEC   how often the table is drawn, and what it covers (default 1)\n"
	       "  -d, --duration SEC   stop after SEC seconds (default: Ctrl-C, or the process's end)\n"
	       "  --limit N            at most N rows (default 20; 0: all)\n"
	       "  --sort self|total    order by self (default) or cumulative samples\n"
	       "  --by function|line|file|lib|task|state   the unit of a row (default function)\n"
	       "  --python-only        Python frames alone (a Python program)\n"
	       "  --wall               wall-clock samples: sleeping threads count too\n"
	       "  -F, --frequency HZ   samples per second per thread (default 999)\n\n"
	       "On a terminal the table is redrawn in place; otherwise each interval's\n"
	       "table follows the last, after a line '--- kiln top: ...'.\n");
}

static volatile sig_atomic_t top_stop;

static void on_signal(int sig)
{
	(void)sig;
	top_stop = 1;
}

/* One frame: the last interval of what path holds so far. false when there
 * is nothing to show yet (the first flush has not come). */
static bool draw(const char *path, long pid, double interval, const struct view_opts *vo, int by, bool tty,
		 bool final)
{
	struct profile p;
	memset(&p, 0, sizeof(p));
	char err[256];
	if (profile__load(&p, path, err, sizeof(err)) < 0) {
		profile__release(&p);
		return false;
	}
	/* as --time FROM..TO and --python-only (view_opts__apply, which says
	 * why it cannot: here an early file with no window yet is no error) */
	double dur = profile__duration(&p), from = dur > interval ? dur - interval : 0, to = dur;
	p.python_only = vo->python_only;
	if (profile__time_range(&p, &from, &to, err, sizeof(err)) < 0) {
		profile__release(&p);
		return false;
	}
	struct view_filter vf = {.metric = kiln_metric__parse(vo->metric_name), .pid = -1, .tid = -1};
	struct table t;
	table__build(&t, &p, &vf, by);
	table__sort(&t, vo->sort_self);
	const struct pprocess *pp = profile__process(&p, (uint32_t)pid);
	const char *prog = pp && pp->exe ? pp->exe : p.program ? p.program : "?";
	if (tty)
		fputs("\033[H\033[2J", stdout);
	else
		printf("--- kiln top: %.1f s\n", dur);
	printf("kiln top: pid %ld (%s), %.1f s; %.2f..%.2f s: %lld %s samples%s\n", pid, prog, dur, from, to,
	       (long long)t.sum, kiln_metric__name(vf.metric), tty && !final ? " (Ctrl-C stops)" : "");
	export__table_text(stdout, &p, &t, vo->limit, vo->sort_self);
	fflush(stdout);
	table__release(&t);
	profile__release(&p);
	return true;
}

/* Wait for the recording child: it detaches on SIGINT; one that does not
 * end within 20 s is killed (only CPU sampling: nothing of it is left in
 * the process). Its exit status. */
static int reap(pid_t child, bool interrupt)
{
	int status = 0;
	if (interrupt)
		kill(child, SIGINT);
	for (int i = 0; i < 2000; i++) {
		pid_t w = waitpid(child, &status, WNOHANG);
		if (w == child)
			return record_wait_status(status);
		if (w < 0 && errno != EINTR)
			return 125;
		struct timespec ts = {0, 10000000};
		nanosleep(&ts, NULL);
	}
	kill(child, SIGKILL);
	waitpid(child, &status, 0);
	return 125;
}

int cmd_top(int argc, char **argv)
{
	enum { O_LIMIT = 256, O_SORT, O_BY, O_PYONLY, O_WALL, O_HELP };
	static const struct option lo[] = {{"interval", required_argument, NULL, 'i'},
					   {"duration", required_argument, NULL, 'd'},
					   {"frequency", required_argument, NULL, 'F'},
					   {"limit", required_argument, NULL, O_LIMIT},
					   {"sort", required_argument, NULL, O_SORT},
					   {"by", required_argument, NULL, O_BY},
					   {"python-only", no_argument, NULL, O_PYONLY},
					   {"wall", no_argument, NULL, O_WALL},
					   {"help", no_argument, NULL, O_HELP},
					   {NULL, 0, NULL, 0}};
	double interval = 1.0, duration = 0;
	long limit = 20, freq = 0;
	int by = BY_FUNCTION;
	bool sort_self = true, python_only = false, wall = false;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "i:d:F:h", lo, NULL)) != -1) {
		switch (c) {
		case 'i':
			if (!cli__parse_double(optarg, 0.5, 3600, &interval))
				return cli__usage(CMD, "--interval takes seconds from 0.5 to 3600, not '%s'", optarg);
			break;
		case 'd':
			if (!cli__parse_double(optarg, 0.001, 1e7, &duration))
				return cli__usage(CMD, "--duration takes seconds above 0, not '%s'", optarg);
			break;
		case 'F':
			if (!cli__parse_long(optarg, 1, 20000, &freq))
				return cli__usage(CMD, "--frequency takes 1 to 20000 Hz, not '%s'", optarg);
			break;
		case O_LIMIT:
			if (!cli__parse_long(optarg, 0, 100000000, &limit))
				return cli__usage(CMD, "--limit takes a number of rows (0: all), not '%s'", optarg);
			break;
		case O_SORT:
			if (strcmp(optarg, "self") && strcmp(optarg, "total"))
				return cli__usage(CMD, "--sort takes self or total, not '%s'", optarg);
			sort_self = !strcmp(optarg, "self");
			break;
		case O_BY:
			by = by__parse(optarg); /* a table of the last interval: not by stack or process */
			if (by < 0 || by == BY_STACK || by == BY_PROCESS)
				return cli__usage(CMD, "--by takes function, line, file, lib, task or state, not '%s'", optarg);
			break;
		case O_PYONLY:
			python_only = true;
			break;
		case O_WALL:
			wall = true;
			break;
		case 'h':
		case O_HELP:
			help();
			return 0;
		default:
			return cli__usage(CMD, "option '%s' is unknown or lacks its value", argv[optind - 1]);
		}
	}
	if (optind != argc - 1)
		return cli__usage(CMD, optind >= argc ? "which process? (kiln top PID)" : "one PID only");
	long pid;
	if (!cli__parse_long(argv[optind], 1, 2147483647, &pid))
		return cli__usage(CMD, "'%s' is not a process id", argv[optind]);
	if (kill((pid_t)pid, 0) < 0 && errno == ESRCH)
		return cli__error(CMD, "no process with pid %ld", pid);

	char dir[4096];
	if (cli__private_dir(CMD, "top", dir, sizeof(dir)))
		return 1;
	char path[4200], pids[32], hz[32];
	snprintf(path, sizeof(path), "%s/top.kiln", dir);
	snprintf(pids, sizeof(pids), "%ld", pid);
	snprintf(hz, sizeof(hz), "%ld", freq ? freq : 999);
	char a_rec[] = "record", a_q[] = "-q", a_p[] = "-p", a_wall[] = "--wall", a_f[] = "-F", a_o[] = "-o";
	char *rargv[12];
	int ra = 0;
	rargv[ra++] = a_rec;
	rargv[ra++] = a_q;
	rargv[ra++] = a_p;
	rargv[ra++] = pids;
	if (wall)
		rargv[ra++] = a_wall;
	rargv[ra++] = a_f;
	rargv[ra++] = hz;
	rargv[ra++] = a_o;
	rargv[ra++] = path;
	rargv[ra] = NULL;

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	fflush(stdout);
	pid_t child = fork();
	if (child < 0) {
		rmdir(dir);
		return cli__error(CMD, "cannot start the recording: %s", strerror(errno));
	}
	if (child == 0) {
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		optind = 0;
		record_cmd = CMD; /* its refusals are said as kiln top's */
		fflush(stdout);
		_exit(cmd_record(ra, rargv));
	}

	struct view_opts vo;
	view_opts__init(&vo);
	vo.limit = limit;
	vo.sort_self = sort_self;
	vo.python_only = python_only;
	vo.metric_name = wall ? "wall" : "cpu";
	bool tty = isatty(STDOUT_FILENO);
	uint64_t t0 = now_ns(), next = t0 + (uint64_t)(interval * 1e9);
	int rc, drawn = 0;
	for (;;) {
		int status;
		if (waitpid(child, &status, WNOHANG) == child) {
			rc = record_wait_status(status);
			break;
		}
		uint64_t now = now_ns();
		if (top_stop || (duration > 0 && now - t0 >= (uint64_t)(duration * 1e9))) {
			rc = reap(child, true);
			break;
		}
		if (now >= next) {
			drawn += draw(path, pid, interval, &vo, by, tty, false);
			next += (uint64_t)(interval * 1e9);
			if (next < now)
				next = now + (uint64_t)(interval * 1e9);
		}
		struct timespec ts = {0, 20000000};
		nanosleep(&ts, NULL);
	}
	/* the process ended, or kiln top was stopped: the last stretch, once more,
	 * from the whole file (the recording's own end is in it) */
	drawn += draw(path, pid, interval, &vo, by, tty, true);
	unlink(path);
	rmdir(dir);
	if (!drawn && rc != 0)
		return 1; /* the recording said why, as kiln top's */
	if (!drawn)
		return cli__error(CMD, "nothing was recorded of pid %ld", pid);
	if (!top_stop && !(duration > 0))
		fprintf(stderr, "kiln top: pid %ld ended\n", pid);
	return 0;
}
