/* kiln's entry point: a table of subcommands.
 *
 * To add a subcommand: write src/cli/cmd_NAME.c with `int cmd_NAME(int argc,
 * char **argv)` (argv[0] is the subcommand's name; return the exit code),
 * declare it in cli.h and add a line to the table below. See
 * docs/adding-a-subcommand.md. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "cli/cli.h"
#include "kiln/kiln.h"

static const struct cmd commands[] = {
	{"record", cmd_record, "launch a program (or attach to a pid) and profile it"},
	{"report", cmd_report, "cumulative tables of a profile (like cProfile's sort cumulative)"},
	{"export", cmd_export, "write a profile as folded stacks, svg, speedscope or json"},
	{"flamegraph", cmd_flamegraph, "an interactive SVG flamegraph (= export --format svg)"},
	{"diff", cmd_diff, "what changed between two profiles or heap snapshots"},
	{"snapshot", cmd_snapshot, "write a heap snapshot of a program running under kiln record --heap"},
	{"dump", cmd_dump, "every thread of a running process, now: its state and its stack"},
	{"top", cmd_top, "a running process's busiest functions, live (as py-spy top)"},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: kiln COMMAND [OPTIONS]\n\n"
		   "kiln is a sampling CPU and heap profiler for Linux.\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\n  kiln record -- ./prog args     profile a program until it exits\n"
		   "  kiln record --heap -- ./prog   also track every heap allocation\n"
		   "  kiln record -p PID -d 10       attach to a running process for 10 s\n"
		   "  kiln report kiln.data          the cumulative table\n"
		   "  kiln flamegraph kiln.data -o out.svg\n\n"
		   "'kiln COMMAND --help' tells more. 'kiln --version' prints the version.\n");
}

/* A full disk or closed pipe on stdout must not pass silently: but a reader
 * that went away (`kiln report | head`) is not an error either. */
static int finish_stdout(int rc)
{
	if (fflush(stdout) == 0 && !ferror(stdout))
		return rc;
	if (errno == EPIPE)
		return rc;
	fprintf(stderr, "kiln: error writing to standard output: %s\n", strerror(errno));
	return rc ? rc : KILN_EXIT_ERROR;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc < 2) {
		usage(stderr);
		return KILN_EXIT_USAGE;
	}
	const char *name = argv[1];
	if (!strcmp(name, "--help") || !strcmp(name, "-h") || !strcmp(name, "help")) {
		usage(stdout);
		return finish_stdout(0);
	}
	if (!strcmp(name, "--version") || !strcmp(name, "-V")) {
		printf("kiln %s\n", KILN_VERSION);
		return finish_stdout(0);
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(name, commands[i].name))
			return finish_stdout(commands[i].fn(argc - 1, argv + 1));
	fprintf(stderr, "kiln: '%s' is not a kiln command\nTry 'kiln --help'.\n", name);
	return KILN_EXIT_USAGE;
}
