/* kiln export FILE --format FMT [-o OUT]: a profile in a format other tools
 * read. kiln flamegraph is `export --format svg`. */
#include <getopt.h>
#include <string.h>
#include <unistd.h>
#include "cli/cli.h"
#include "export/export.h"

int view_cmd_parse(const char *cmd, int argc, char **argv, struct view_opts *o, const char **files, int max,
		   void (*helpfn)(void));

static void help(void)
{
	printf("usage: kiln export FILE --format FMT [-o OUT] [OPTIONS]\n\n"
	       "  --format FMT      folded | svg | speedscope | json | pprof | timeline | firefox\n"
	       "  -o, --output OUT  where to write (default: standard output)\n"
	       "  --metric M        which metric (default: cpu, or leak_bytes, or live_bytes)\n"
	       "  --pid P, --tid T  only that process / thread\n"
	       "  --python-only     Python frames alone (as py-spy without --native)\n"
	       "  --threads         folded/svg: a THREADNAME-TID frame under the process\n"
	       "  --inverted        svg: an icicle graph (roots at the top)\n"
	       "  --title TEXT      svg: the title\n"
	       "  --time FROM..TO   a stretch of the recording (seconds from its start; either\n"
	       "                    end may be left out): cpu, wall, alloc_* in it, live_* at its end\n");
}

static void flamegraph_help(void)
{
	printf("usage: kiln flamegraph FILE [-o OUT.svg] [OPTIONS]\n\n"
	       "A self-contained interactive SVG flamegraph (= kiln export --format svg).\n"
	       "Options as for kiln export: --metric, --pid, --tid, --threads, --inverted, --title,\n"
	       "--python-only, --time. With a memory chart, drag across it to draw the flamegraph\n"
	       "again for that stretch of time.\n");
}

static int export_run(const char *cmd, struct view_opts *o, const char *file)
{
	static const char *const formats[] = {"folded", "svg", "speedscope", "json", "pprof", "timeline", "firefox"};
	int fmt = -1;
	for (size_t i = 0; i < ARRAY_SIZE(formats); i++)
		if (o->format && !strcmp(o->format, formats[i]))
			fmt = (int)i;
	if (!o->format)
		return cli__usage(cmd, "--format is needed (folded, svg, speedscope, json, pprof, timeline, firefox)");
	if (o->raw || o->normalize)
		return cli__usage(cmd, "%s is for kiln diff", o->raw ? "--raw" : "--normalize");
	if (fmt < 0)
		return cli__usage(cmd, "unknown format '%s' (folded, svg, speedscope, json, pprof, timeline, firefox)", o->format);
	if (fmt == 4 && (!o->output || !strcmp(o->output, "-")) && isatty(1))
		return cli__usage(cmd, "pprof is binary: give -o FILE");
	struct profile p;
	if (cli__load(cmd, file, &p) < 0)
		return 1;
	int arc = view_opts__apply(o, cmd, file, &p);
	if (arc || view_opts__check_ids(o, cmd, file, &p) < 0) {
		profile__release(&p);
		return arc ? arc : 1;
	}
	struct view_filter vf = {.metric = view_opts__metric(o, cmd, &p), .pid = o->pid, .tid = o->tid,
				 .threads = o->threads};
	struct out out;
	if (out__open(&out, cmd, o->output) < 0) {
		profile__release(&p);
		return 1;
	}
	int rc = 0;
	switch (fmt) {
	case 0: rc = export__folded(out.f, &p, &vf); break;
	case 1: {
		struct svg_opts so = {.title = o->title, .inverted = o->inverted, .width = 1200};
		rc = export__svg(out.f, &p, &vf, &so);
		break;
	}
	case 2: rc = export__speedscope(out.f, &p, &vf); break;
	case 3: rc = export__json(out.f, &p); break;
	case 4: rc = export__pprof(out.f, &p, &vf); break;
	case 5:
		if (!p.npoints) {
			cli__error(cmd, "%s holds no timeline (it was recorded before kiln kept timelines, or ended at once)", file);
			rc = -1;
			break;
		}
		rc = export__timeline_csv(out.f, &p, &vf);
		break;
	case 6: rc = export__firefox(out.f, &p, &vf); break;
	}
	profile__release(&p);
	return out__close(&out, cmd, rc == 0);
}

int cmd_export(int argc, char **argv)
{
	struct view_opts o;
	const char *file = NULL;
	int n = view_cmd_parse("export", argc, argv, &o, &file, 1, help);
	if (n == -1)
		return 0;
	if (n < 0)
		return 2;
	if (n == 0)
		return cli__usage("export", "no profile file given");
	return export_run("export", &o, file);
}

int cmd_flamegraph(int argc, char **argv)
{
	struct view_opts o;
	const char *file = NULL;
	int n = view_cmd_parse("flamegraph", argc, argv, &o, &file, 1, flamegraph_help);
	if (n == -1)
		return 0;
	if (n < 0)
		return 2;
	if (n == 0)
		return cli__usage("flamegraph", "no profile file given");
	if (o.format && strcmp(o.format, "svg"))
		return cli__usage("flamegraph", "flamegraph writes svg; use kiln export for '%s'", o.format);
	o.format = "svg";
	return export_run("flamegraph", &o, file);
}
