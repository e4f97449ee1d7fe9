/* kiln report FILE: what was recorded, a heap summary, and the cumulative
 * table (self and total per function, line, file, library or stack). */
#include <getopt.h>
#include <string.h>
#include "cli/cli.h"
#include "export/export.h"

#define CMD "report"

static void help(void)
{
	printf("usage: kiln report FILE [OPTIONS]\n\n"
	       "A cumulative table of a profile or heap snapshot, like cProfile's sort cumulative.\n\n"
	       "  --metric M        cpu, wall, alloc_bytes, alloc_count, leak_bytes, leak_count,\n"
	       "                    peak_bytes, temp_count, live_bytes, live_count\n"
	       "  --by UNIT         function (default), line, file, lib, stack, process,\n"
	       "                    task (asyncio) or state (Python / native / GIL wait / idle)\n"
	       "  --sort self|total order rows by self or cumulative value (default total)\n"
	       "  --limit N         at most N rows (default 25; 0: all)\n"
	       "  --pid P, --tid T  only that process / thread\n"
	       "  --json            the table as JSON (also: --format json; --format table)\n"
	       "  -o FILE           write there instead of standard output\n"
	       "  --all-frames      keep start-up frames (_start, __libc_start_main, ...) in the table\n"
	       "  --python-only     Python frames alone (as py-spy without --native)\n"
	       "  --time FROM..TO   a stretch of the recording (seconds from its start; either end\n"
	       "                    may be left out): cpu, wall, alloc_* in it, live_* at its end\n"
	       "  --slow-callbacks [MS]  asyncio: every stretch in which one callback or task step\n"
	       "                    held an event loop MS ms or more (default 100; a --wall recording)\n");
}

/* --slow-callbacks [MS] (also --slow-callbacks=MS): taken out of argv, its
 * value optional. 1 when given (*ms set), 0 when not, -1 on a bad value. */
static int take_slow(int *argc, char **argv, long *ms)
{
	int found = 0, k = 0;
	for (int i = 0; i < *argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--")) { /* operands from here on */
			while (i < *argc)
				argv[k++] = argv[i++];
			break;
		}
		if (!strncmp(a, "--slow-callbacks", 16) && (a[16] == 0 || a[16] == '=')) {
			found = 1;
			*ms = 100;
			const char *v = a[16] == '=' ? a + 17 : NULL;
			if (!v && i + 1 < *argc && argv[i + 1][0] >= '0' && argv[i + 1][0] <= '9')
				v = argv[++i];
			if (v && !cli__parse_long(v, 0, 86400000, ms)) {
				cli__usage(CMD, "--slow-callbacks takes milliseconds (0 to 86400000), not '%s'", v);
				return -1;
			}
			continue;
		}
		argv[k++] = argv[i];
	}
	*argc = k;
	return found;
}

/* Parse the shared view options plus FILE operands (at most max). Returns
 * the number of files, -1 for --help, or -2 after a usage error. */
int view_cmd_parse(const char *cmd, int argc, char **argv, struct view_opts *o, const char **files, int max,
		   void (*helpfn)(void));
int view_cmd_parse(const char *cmd, int argc, char **argv, struct view_opts *o, const char **files, int max,
		   void (*helpfn)(void))
{
	static const struct option longopts[] = {VIEW_LONG_OPTIONS, {NULL, 0, NULL, 0}};
	view_opts__init(o);
	int c, nfiles = 0;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "-o:", longopts, NULL)) != -1) {
		if (c == 1) {
			if (nfiles == max) {
				cli__usage(cmd, "too many files ('%s')", optarg);
				return -2;
			}
			files[nfiles++] = optarg;
			continue;
		}
		if (c == OPT_HELP) {
			helpfn();
			return -1;
		}
		int r = view_opts__parse(o, cmd, c, optarg);
		if (r < 0)
			return -2;
		if (r == 0) {
			if (optopt)
				cli__usage(cmd, "option '-%c' is unknown or lacks its value", optopt);
			else
				cli__usage(cmd, "option '%s' is unknown or lacks its value", argv[optind - 1]);
			return -2;
		}
	}
	while (optind < argc && nfiles < max)
		files[nfiles++] = argv[optind++];
	if (optind < argc) {
		cli__usage(cmd, "too many files ('%s')", argv[optind]);
		return -2;
	}
	return nfiles;
}

int cmd_report(int argc, char **argv)
{
	struct view_opts o;
	const char *file = NULL;
	long slow_ms = 0;
	int slow = take_slow(&argc, argv, &slow_ms);
	if (slow < 0)
		return 2;
	int n = view_cmd_parse(CMD, argc, argv, &o, &file, 1, help);
	if (n == -1)
		return 0;
	if (n < 0)
		return 2;
	if (n == 0)
		return cli__usage(CMD, "no profile file given");
	if (o.format && !strcmp(o.format, "json"))
		o.json = true;
	else if (o.format && strcmp(o.format, "table"))
		return cli__usage(CMD, "--format takes table or json here, not '%s' (kiln export writes the other formats)",
				  o.format);
	if (o.raw || o.normalize)
		return cli__usage(CMD, "%s is for kiln diff", o.raw ? "--raw" : "--normalize");
	if (o.title || o.inverted)
		return cli__usage(CMD, "%s is for flamegraphs (kiln flamegraph, kiln export --format svg)",
				  o.title ? "--title" : "--inverted");
	struct profile p;
	if (cli__load(CMD, file, &p) < 0)
		return 1;
	int arc = view_opts__apply(&o, CMD, file, &p);
	if (arc || view_opts__check_ids(&o, CMD, file, &p) < 0) {
		profile__release(&p);
		return arc ? arc : 1;
	}
	struct out out;
	if (out__open(&out, CMD, o.output) < 0) {
		profile__release(&p);
		return 1;
	}
	struct view_filter vf = {.metric = view_opts__metric(&o, CMD, &p), .pid = o.pid, .tid = o.tid,
				 .threads = o.threads, .all_frames = o.all_frames};
	if (slow) {
		if (o.json) {
			export__slow_json(out.f, &p, &vf, (uint64_t)slow_ms * 1000000ull);
		} else {
			export__report_header(out.f, &p, &vf);
			export__slow_text(out.f, &p, &vf, (uint64_t)slow_ms * 1000000ull);
		}
		profile__release(&p);
		return out__close(&out, CMD, true);
	}
	struct table t;
	table__build(&t, &p, &vf, o.by);
	table__sort(&t, o.sort_self);
	if (o.json) {
		export__table_json(out.f, &p, &t, o.limit, o.sort_self, &vf);
	} else {
		export__report_header(out.f, &p, &vf);
		export__heap_summary(out.f, &p, &vf);
		export__table_text(out.f, &p, &t, o.limit, o.sort_self);
	}
	table__release(&t);
	profile__release(&p);
	return out__close(&out, CMD, true);
}
