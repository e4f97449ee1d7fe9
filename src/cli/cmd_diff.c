/* kiln diff BASE NEW: what changed between two profiles or two heap
 * snapshots, per function, line, file or stack (tracemalloc's compare_to). */
#include <getopt.h>
#include <string.h>
#include "cli/cli.h"
#include "export/export.h"
#include "kiln/kiln.h"

#define CMD "diff"

int view_cmd_parse(const char *cmd, int argc, char **argv, struct view_opts *o, const char **files, int max,
		   void (*helpfn)(void));

static void help(void)
{
	printf("usage: kiln diff BASE NEW [OPTIONS]\n\n"
	       "Rows with base, new, delta and delta%%, the largest change first, and a total.\n\n"
	       "  --metric M        any metric (default: live_bytes for snapshots, else as report)\n"
	       "  --by UNIT         function (default), line, file, lib, stack, process,\n"
	       "                    task (asyncio) or state (Python / native / GIL wait / idle)\n"
	       "  --limit N         at most N rows (default 25; 0: all)\n"
	       "  --pid P, --tid T  only that process / thread\n"
	       "  --python-only     Python frames alone\n"
	       "  --time FROM..TO   the same stretch of each recording (see kiln report --help);\n"
	       "                    given twice, BASE's then NEW's: kiln diff a.kiln a.kiln\n"
	       "                    --time ..1 --time ..5 --metric live_bytes is what grew from 1 s to 5 s\n"
	       "  --sort self|total compare self or cumulative values (default total)\n"
	       "  --json            the rows as JSON\n"
	       "  --raw             compare counts as they are (default for heap metrics)\n"
	       "  --normalize       compare shares: BASE scaled to NEW's total first (default for\n"
	       "                    cpu and wall, as perf diff and pprof -normalize do)\n"
	       "  --format folded|svg  signed folded stacks, or a differential flamegraph\n"
	       "  -o OUT            where to write (default: standard output)\n");
}

int cmd_diff(int argc, char **argv)
{
	struct view_opts o;
	const char *files[2] = {NULL, NULL};
	int n = view_cmd_parse(CMD, argc, argv, &o, files, 2, help);
	if (n == -1)
		return 0;
	if (n < 0)
		return 2;
	if (n < 2)
		return cli__usage(CMD, "needs two files: BASE and NEW");
	if (o.format && strcmp(o.format, "folded") && strcmp(o.format, "svg") && strcmp(o.format, "table"))
		return cli__usage(CMD, "--format takes folded, svg or table, not '%s'", o.format);
	struct profile a, b;
	if (cli__load(CMD, files[0], &a) < 0)
		return 1;
	if (cli__load(CMD, files[1], &b) < 0) {
		profile__release(&a);
		return 1;
	}
	/* each file cut at its own windows: the same seconds, or NEW's own
	 * (a second --time): what grew between two moments of one run */
	int arc = view_opts__apply(&o, CMD, files[0], &a);
	if (o.time_new_set) {
		o.time_from = o.time_new_from;
		o.time_to = o.time_new_to;
	}
	if (!arc)
		arc = view_opts__apply(&o, CMD, files[1], &b);
	if (arc) {
		profile__release(&a);
		profile__release(&b);
		return arc;
	}
	int metric = o.metric_name ? view_opts__metric(&o, CMD, &a) : profile__default_metric(&b);
	if (o.raw && o.normalize) {
		profile__release(&a);
		profile__release(&b);
		return cli__usage(CMD, "--raw and --normalize exclude each other");
	}
	bool shares = o.normalize || (!o.raw && (metric == KM_CPU || metric == KM_WALL));
	struct view_filter vf = {.metric = metric, .pid = o.pid, .tid = o.tid, .threads = o.threads, .all_frames = o.all_frames};
	/* A recording's end state is a snapshot too: what was live when it
	 * ended is its leak_* */
	struct view_filter va = vf, vb = vf;
	if (metric == KM_LIVE_BYTES || metric == KM_LIVE_COUNT) {
		int leak = metric == KM_LIVE_BYTES ? KM_LEAK_BYTES : KM_LEAK_COUNT;
		if (strcmp(a.kind, "snapshot") && !a.ranged)
			va.metric = leak;
		if (strcmp(b.kind, "snapshot") && !b.ranged)
			vb.metric = leak;
	}
	/* Two runs have other pids: their processes (and threads) are matched by
	 * program and start order, as a user means it, and the diff says so. */
	if (view__multi_process(&a) || view__multi_process(&b) || o.threads) {
		bool same = a.nprocs == b.nprocs;
		for (size_t i = 0; same && i < a.nprocs; i++)
			same = profile__process(&b, a.procs[i].pid) != NULL;
		if (!same) {
			va.by_order = vb.by_order = true;
			if (!o.json)
				fprintf(stderr, "kiln diff: processes matched by program and start order (PROGRAM#N): "
						"their pids differ between the two files\n");
		}
	}
	char ea[80], eb[80];
	export__estimated(&a, metric, ea, sizeof(ea));
	export__estimated(&b, metric, eb, sizeof(eb));
	if (!o.json && (*ea || *eb)) /* the difference of estimates is one too */
		fprintf(stderr, "kiln diff: %s figures are estimates:%s%s%s%s\n", kiln_metric__name(metric),
			*ea ? " BASE" : "", ea, *eb ? " NEW" : "", eb);
	struct out out;
	if (out__open(&out, CMD, o.output) < 0) {
		profile__release(&a);
		profile__release(&b);
		return 1;
	}
	int rc = 0;
	if (o.format && (!strcmp(o.format, "folded") || !strcmp(o.format, "svg"))) {
		struct folded fa, fb;
		folded__build(&fa, &a, &va);
		folded__build(&fb, &b, &vb);
		double scale = shares && fa.sum > 0 ? (double)fb.sum / (double)fa.sum : 0;
		if (scale) {
			fprintf(stderr, "kiln diff: shares compared: BASE scaled by x%.3f to NEW's total (%lld -> %lld); "
					"--raw compares counts\n", scale, (long long)fa.sum, (long long)fb.sum);
			folded__scale(&fa, scale);
		}
		if (!strcmp(o.format, "folded")) {
			struct diff d;
			diff__folded(&d, &fa, &fb);
			export__diff_folded(out.f, &d);
			diff__release(&d);
		} else {
			struct svg_opts so = {.title = o.title, .inverted = o.inverted, .width = 1200};
			rc = export__svg_diff(out.f, &fa, &fb, metric, &so);
		}
		folded__release(&fa);
		folded__release(&fb);
	} else {
		struct table ta, tb;
		table__build(&ta, &a, &va, o.by);
		table__build(&tb, &b, &vb, o.by);
		int64_t raw = ta.sum;
		double scale = shares && ta.sum > 0 ? (double)tb.sum / (double)ta.sum : 0;
		if (scale)
			table__scale(&ta, scale);
		struct diff d;
		/* cumulative values by default, as report sorts them: a change
		 * shows in the function it happened under and in its callers */
		diff__tables(&d, &ta, &tb, o.sort_self);
		d.base_scale = scale;
		d.base_raw_sum = raw;
		if (o.json)
			export__diff_json(out.f, &d, metric, by__name(o.by), o.limit);
		else
			export__diff_text(out.f, &d, metric, by__name(o.by), o.limit);
		diff__release(&d);
		table__release(&ta);
		table__release(&tb);
	}
	profile__release(&a);
	profile__release(&b);
	return out__close(&out, CMD, rc == 0);
}
