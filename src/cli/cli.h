/* What the subcommands share: the command table entry, error reporting (only
 * the CLI prints and decides exit codes) and the options of the views. */
#ifndef KILN_CLI_H
#define KILN_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "aggregate/view.h"
#include "util/safefile.h"

struct cmd {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
};

int cmd_record(int argc, char **argv);
extern const char *record_cmd; /* the name cmd_record's errors are said under ("record") */
int cmd_report(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_flamegraph(int argc, char **argv);
int cmd_diff(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);
int cmd_dump(int argc, char **argv);
int cmd_top(int argc, char **argv);

/* "kiln CMD: message" + "Try 'kiln CMD --help'." on stderr; returns 2. */
int cli__usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "kiln CMD: message" on stderr; returns 1. */
int cli__error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cli__warn(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A private folder kiln-NAME.XXXXXX in $TMPDIR (or /tmp) for a recording
 * kiln makes for itself (dump, top), its path in dir; 0, or the exit
 * status after one line said why. */
int cli__private_dir(const char *cmd, const char *name, char *dir, size_t n);

/* Parse a whole number in [lo, hi]; false on anything else. */
bool cli__parse_long(const char *s, long lo, long hi, long *out);
bool cli__parse_double(const char *s, double lo, double hi, double *out);
/* A size in bytes in [lo, hi], with an optional K, M or G (powers of 1024;
 * "KiB", "KB" too); false on anything else. */
bool cli__parse_bytes(const char *s, uint64_t lo, uint64_t hi, uint64_t *out);

/* Options shared by report, diff and export. */
struct view_opts {
	const char *metric_name;
	int by;
	bool sort_self;
	long limit;
	int64_t pid, tid;
	bool json, threads, inverted, all_frames, python_only;
	bool raw, normalize; /* diff: compare counts / shares (default: shares for cpu and wall) */
	const char *format;
	const char *output;
	const char *title;
	bool time_set;              /* --time FROM..TO: a stretch of the recording */
	double time_from, time_to;  /* seconds from its start */
	bool time_new_set;          /* diff: a second --time, NEW's own stretch */
	double time_new_from, time_new_to;
};
void view_opts__init(struct view_opts *o);
/* Handle one of the shared options (getopt code c with optarg); returns 1
 * when handled, 0 when not one of them, -1 on a bad value (usage printed). */
int view_opts__parse(struct view_opts *o, const char *cmd, int c, const char *arg);
/* Resolve the metric against a profile: -1 after printing an error. */
int view_opts__metric(const struct view_opts *o, const char *cmd, const struct profile *p);

/* --pid / --tid that name nothing in the profile: one line, -1. */
int view_opts__check_ids(const struct view_opts *o, const char *cmd, const char *path, const struct profile *p);

/* Load a profile; on failure print "kiln CMD: FILE: reason" and return -1.
 * A warning (file cut short) is printed and loading succeeds. */
int cli__load(const char *cmd, const char *path, struct profile *p);
/* What the view options change in a loaded profile (--python-only, --time:
 * the cells become the stretch of time, the metric is fixed to one a
 * stretch holds). 0, or the exit status after one line printed: 2 for a
 * metric --time cannot show, 1 for a file with no time windows. */
int view_opts__apply(struct view_opts *o, const char *cmd, const char *path, struct profile *p);

/* Whether path is kiln's own standard output ("-", /dev/stdout, or the file
 * stdout is redirected to; a terminal or /dev/null does not count). */
bool cli__is_stdout(const char *path);

/* Output to what the user named (util/safefile.h): a regular file is written
 * whole or not at all (an unpredictable temporary beside it, renamed on
 * success); a device, FIFO or symlink is written through. path NULL or "-"
 * is stdout. */
struct out {
	FILE *f;
	struct safe_out so;
};
int out__open(struct out *o, const char *cmd, const char *path);
/* Close; rename into place when ok, else remove. Returns 0 or 1 (error printed). */
int out__close(struct out *o, const char *cmd, bool ok);

/* The long options shared by report/diff/export, for getopt_long tables. */
enum {
	OPT_METRIC = 1000, OPT_BY, OPT_SORT, OPT_LIMIT, OPT_PID, OPT_TID, OPT_JSON, OPT_THREADS, OPT_FORMAT,
	OPT_INVERTED, OPT_TITLE, OPT_HELP, OPT_ALLFRAMES, OPT_RAW, OPT_NORMALIZE, OPT_PYONLY, OPT_TIME,
};
#define VIEW_LONG_OPTIONS                                                                                      \
	{"metric", required_argument, NULL, OPT_METRIC}, {"by", required_argument, NULL, OPT_BY},              \
	{"sort", required_argument, NULL, OPT_SORT}, {"limit", required_argument, NULL, OPT_LIMIT},            \
	{"pid", required_argument, NULL, OPT_PID}, {"tid", required_argument, NULL, OPT_TID},                  \
	{"json", no_argument, NULL, OPT_JSON}, {"threads", no_argument, NULL, OPT_THREADS},                    \
	{"format", required_argument, NULL, OPT_FORMAT}, {"inverted", no_argument, NULL, OPT_INVERTED},        \
	{"title", required_argument, NULL, OPT_TITLE}, {"all-frames", no_argument, NULL, OPT_ALLFRAMES},              \
	{"output", required_argument, NULL, 'o'}, {"raw", no_argument, NULL, OPT_RAW},                                \
	{"normalize", no_argument, NULL, OPT_NORMALIZE}, {"python-only", no_argument, NULL, OPT_PYONLY},              \
	{"time", required_argument, NULL, OPT_TIME},                                                                  \
	{"help", no_argument, NULL, OPT_HELP}

#endif
