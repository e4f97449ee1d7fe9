/* A self-contained interactive SVG flamegraph: frames merged into a tree
 * (FlameGraph's layout: children sorted by name, width by value), frames
 * narrower than half a pixel left out (their parent keeps their width),
 * colour by kind (program, library, kernel, JIT, inlined) or, for a diff, by
 * growth (red) and shrinkage (blue). The embedded script gives hover
 * details, click to zoom, reset, and search with the matched share. */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "export/export.h"
#include "export/svg_int.h"
#include "stream/format.h"

static void tree_init(struct tree *t)
{
	memset(t, 0, sizeof(*t));
	intern__init(&t->keys);
	intern__init(&t->names);
	intern__str(&t->names, "all");
	ARR_GROW(t->n, t->cap, 1);
	t->n[0] = (struct node){.first = UINT32_MAX, .next = UINT32_MAX, .parent = UINT32_MAX};
	t->len = 1;
	uint32_t k[2] = {UINT32_MAX, 0};
	intern__put(&t->keys, k, sizeof(k), NULL);
}

static void tree_release(struct tree *t)
{
	free(t->name_of_sid);
	free(t->n);
	intern__release(&t->keys);
	intern__release(&t->names);
}

static uint32_t tree_child(struct tree *t, uint32_t parent, uint32_t name)
{
	uint32_t k[2] = {parent, name};
	bool added;
	uint32_t id = intern__put(&t->keys, k, sizeof(k), &added);
	if (added) {
		ARR_GROW(t->n, t->cap, id + 1);
		struct node *c = &t->n[id];
		memset(c, 0, sizeof(*c));
		c->name = name;
		c->parent = parent;
		c->first = UINT32_MAX;
		c->next = t->n[parent].first;
		t->n[parent].first = id;
		t->len = id + 1;
	}
	return id;
}


static uint32_t tree_add(struct tree *t, const struct tframe *fr, size_t n, int64_t v, int64_t base)
{
	uint32_t cur = 0;
	SAT_ADD(t->n[0].value, v);
	SAT_ADD(t->n[0].base, base);
	for (size_t i = 0; i < n; i++) {
		uint32_t name;
		if (t->name_of_sid && fr[i].sid != UINT32_MAX) {
			if (!t->name_of_sid[fr[i].sid])
				t->name_of_sid[fr[i].sid] = intern__str(&t->names, fr[i].name) + 1;
			name = t->name_of_sid[fr[i].sid] - 1;
		} else {
			name = intern__str(&t->names, fr[i].name);
		}
		cur = tree_child(t, cur, name);
		struct node *c = &t->n[cur];
		SAT_ADD(c->value, v);
		SAT_ADD(c->base, base);
		c->kind = fr[i].kind;
		if (fr[i].file && *fr[i].file && !c->file) {
			c->file = intern__str(&t->names, fr[i].file);
			c->line = fr[i].line;
		}
	}
	if ((int)n > t->depth)
		t->depth = (int)n;
	return cur;
}

static void xml_escape(FILE *f, const char *s, size_t max)
{
	for (size_t i = 0; *s && i < max; s++, i++) {
		switch (*s) {
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '&': fputs("&amp;", f); break;
		case '"': fputs("&quot;", f); break;
		case '\'': fputs("&apos;", f); break;
		default:
			if ((unsigned char)*s >= 0x20 || *s == '\t')
				fputc(*s, f);
		}
	}
}

void svg_kind_colour(char *out, size_t n, uint8_t kind, const char *name)
{
	uint64_t h = hash_bytes(name, strlen(name));
	double r1 = (double)(h & 0xff) / 255.0, r2 = (double)((h >> 8) & 0xff) / 255.0;
	int r, g, b;
	switch (kind) {
	case FK_LIBRARY: r = 200 + (int)(55 * r1); g = 150 + (int)(60 * r2); b = 40 + (int)(40 * r1); break;
	case FK_KERNEL: r = 90 + (int)(40 * r1); g = 140 + (int)(50 * r2); b = 215 + (int)(40 * r1); break;
	case FK_JIT: r = 60 + (int)(60 * r1); g = 190 + (int)(55 * r2); b = 60 + (int)(50 * r1); break;
	case FK_INLINED: r = 80 + (int)(50 * r1); g = 190 + (int)(50 * r2); b = 200 + (int)(50 * r1); break;
	case FK_MARKER: r = g = b = 170 + (int)(30 * r1); break;
	case FK_PYTHON: r = 170 + (int)(50 * r1); g = 110 + (int)(50 * r2); b = 210 + (int)(40 * r1); break;
	default: r = 225 + (int)(30 * r1); g = 90 + (int)(90 * r2); b = 40 + (int)(30 * r1); break;
	}
	snprintf(out, n, "rgb(%d,%d,%d)", r, g, b);
}

static void diff_colour(char *out, size_t n, int64_t v, int64_t base, int64_t max_abs)
{
	int64_t d = v - base;
	if (!d || !max_abs) {
		snprintf(out, n, "rgb(235,235,235)");
		return;
	}
	double k = sqrt((double)(d < 0 ? -d : d) / (double)max_abs);
	int c = 235 - (int)(k * 175);
	if (d > 0)
		snprintf(out, n, "rgb(250,%d,%d)", c, c);
	else
		snprintf(out, n, "rgb(%d,%d,250)", c, c);
}

struct layout {
	FILE *f;
	struct tree *t;
	const struct svg_opts *o;
	int metric;
	bool diff;
	double scale; /* px per unit */
	double xpad;
	int height, frame_h, top;
	int rows; /* frame rows drawn: deeper frames are folded into the last */
	int64_t total, max_abs;
	size_t emitted;
};

static struct tree *cmp_tree;

#define SVG_CHAR_W 7.5      /* px per character of the 12px monospace labels, with room */
#define SVG_MIN_TALL_PX 3.0 /* narrower frames do not make the picture taller */
#define SVG_MAX_ROWS 150

static int child_cmp(const void *a, const void *b)
{
	const struct node *x = &cmp_tree->n[*(const uint32_t *)a], *y = &cmp_tree->n[*(const uint32_t *)b];
	return strcmp(intern__cstr(&cmp_tree->names, x->name), intern__cstr(&cmp_tree->names, y->name));
}

/* How many levels lie below node id. */
static int subtree_depth(const struct tree *t, uint32_t id)
{
	int d = 0;
	for (uint32_t c = t->n[id].first; c != UINT32_MAX; c = t->n[c].next) {
		int k = 1 + subtree_depth(t, c);
		if (k > d)
			d = k;
	}
	return d;
}

/* Rows a person can read: as deep as frames at least SVG_MIN_TALL_PX wide
 * go (a rare, very deep stack does not make a picture thousands of pixels
 * tall and blank where it opens), at most SVG_MAX_ROWS. */
static int readable_rows(const struct tree *t, uint32_t id, int depth, double scale)
{
	int d = depth + 1;
	for (uint32_t c = t->n[id].first; c != UINT32_MAX; c = t->n[c].next) {
		if ((double)t->n[c].value * scale < SVG_MIN_TALL_PX)
			continue;
		int k = readable_rows(t, c, depth + 1, scale);
		if (k > d)
			d = k;
	}
	return d;
}

static void emit(struct layout *L, uint32_t id, double x, int depth)
{
	struct node *nd = &L->t->n[id];
	double w = (double)nd->value * L->scale;
	if (depth > 0 && w < 0.5)
		return;
	const char *name = intern__cstr(&L->t->names, nd->name);
	double y = L->o->inverted ? L->top + (double)(depth * L->frame_h)
				  : (double)(L->height - 40 - (depth + 1) * L->frame_h);
	char colour[48], val[32], extra[96] = "";
	if (L->diff)
		diff_colour(colour, sizeof(colour), nd->value, nd->base, L->max_abs);
	else if (depth == 0)
		snprintf(colour, sizeof(colour), "rgb(210,210,210)");
	else
		svg_kind_colour(colour, sizeof(colour), nd->kind, name);
	export__fmt_value(val, sizeof(val), L->metric, (double)nd->value);
	if (L->diff) {
		char dv[32];
		export__fmt_value(dv, sizeof(dv), L->metric, (double)(nd->value - nd->base));
		snprintf(extra, sizeof(extra), ", %s%s vs base", nd->value >= nd->base ? "+" : "", dv);
	}
	/* the last row: what lies deeper is folded into this frame, and said */
	int folded = depth == L->rows - 1 ? subtree_depth(L->t, id) : 0;
	if (folded)
		snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra), "; %d deeper level%s folded", folded,
			 folded == 1 ? "" : "s");
	fprintf(L->f, "<g><title>");
	xml_escape(L->f, name, 2000);
	fprintf(L->f, " (%s, %.2f%%%s)", val, L->total ? 100.0 * (double)nd->value / (double)L->total : 0, extra);
	if (nd->file) {
		fputs(" ", L->f);
		xml_escape(L->f, intern__cstr(&L->t->names, nd->file), 500);
		fprintf(L->f, ":%u", nd->line);
	}
	fprintf(L->f, "</title><rect x=\"%.1f\" y=\"%.0f\" width=\"%.1f\" height=\"%d\" fill=\"%s\" rx=\"2\"/>",
		x + L->xpad, y, w, L->frame_h - 1, colour);
	size_t chars = w > 6 ? (size_t)((w - 6) / SVG_CHAR_W) : 0; /* within the frame, margins kept */
	fprintf(L->f, "<text x=\"%.1f\" y=\"%.0f\">", x + L->xpad + 3, y + L->frame_h - 4);
	if (chars >= 3) {
		size_t len = strlen(name);
		if (len <= chars) {
			xml_escape(L->f, name, len);
		} else {
			xml_escape(L->f, name, chars - 2);
			fputs("..", L->f);
		}
	}
	fputs("</text></g>\n", L->f);
	L->emitted++;
	if (folded)
		return;
	/* children, sorted by name */
	size_t nc = 0;
	for (uint32_t c = nd->first; c != UINT32_MAX; c = L->t->n[c].next)
		nc++;
	if (!nc)
		return;
	uint32_t *kids = xmalloc(nc * sizeof(*kids));
	nc = 0;
	for (uint32_t c = nd->first; c != UINT32_MAX; c = L->t->n[c].next)
		kids[nc++] = c;
	cmp_tree = L->t;
	sort_array(kids, nc, sizeof(*kids), child_cmp);
	double cx = x;
	for (size_t i = 0; i < nc; i++) {
		emit(L, kids[i], cx, depth + 1);
		cx += (double)L->t->n[kids[i]].value * L->scale;
	}
	free(kids);
}

static const char script[] =
	"<script type=\"text/ecmascript\"><![CDATA[\n"
	"'use strict';\n"
	"var svg, frames = [], details, matchedtxt, resetbtn, W, PAD, zoomed = null, searching = null;\n"
	"function init(evt) {\n"
	"  svg = document.documentElement; W = +svg.getAttribute('width'); PAD = 10;\n"
	"  details = document.getElementById('details'); matchedtxt = document.getElementById('matched');\n"
	"  resetbtn = document.getElementById('reset');\n"
	"  collect();\n"
	"  resetbtn.addEventListener('click', unzoom);\n"
	"  document.getElementById('search').addEventListener('click', function () {\n"
	"    if (searching) { clearsearch(); return; }\n"
	"    var re = prompt('Search for (a regular expression):', '');\n"
	"    if (re) search(re);\n"
	"  });\n"
	"  window.addEventListener('keydown', function (e) {\n"
	"    if ((e.ctrlKey || e.metaKey) && e.keyCode === 70) { e.preventDefault(); var re = prompt('Search for:', ''); if (re) search(re); }\n"
	"    if (e.keyCode === 27) { unzoom(); clearsearch(); }\n"
	"  });\n"
	"  if (typeof timeinit === 'function') timeinit();\n"
	"}\n"
	"function collect() {\n"
	"  frames = [];\n"
	"  var gs = document.querySelectorAll('#frames > g');\n"
	"  for (var i = 0; i < gs.length; i++) {\n"
	"    var g = gs[i], r = g.querySelector('rect'), t = g.querySelector('text');\n"
	"    var name = g.querySelector('title').textContent.replace(/ \\([^()]*\\)( .*)?$/, '');\n"
	"    var f = {g: g, r: r, t: t, x: +r.getAttribute('x'), w: +r.getAttribute('width'),\n"
	"             y: +r.getAttribute('y'), name: name, fill: r.getAttribute('fill')};\n"
	"    frames.push(f); g.kf = f;\n"
	"    g.addEventListener('mouseover', function (e) { details.textContent = this.querySelector('title').textContent; });\n"
	"    g.addEventListener('mouseout', function (e) { details.textContent = ' '; });\n"
	"    g.addEventListener('click', function (e) { zoom(this.kf); });\n"
	"  }\n"
	"}\n"
	"function label(f, w) {\n"
	"  var n = Math.floor((w - 6) / CHAR_W);\n"
	"  f.t.textContent = n < 3 ? '' : (f.name.length <= n ? f.name : f.name.substring(0, n - 2) + '..');\n"
	"}\n"
	"function place(f, x, w, show) {\n"
	"  f.g.style.display = show ? '' : 'none'; if (!show) return;\n"
	"  f.r.setAttribute('x', x); f.r.setAttribute('width', w); f.t.setAttribute('x', x + 3); label(f, w);\n"
	"}\n"
	"function zoom(z) {\n"
	"  zoomed = z; resetbtn.style.opacity = 1;\n"
	"  var scale = (W - 2 * PAD) / z.w, eps = 1e-6;\n"
	"  frames.forEach(function (f) {\n"
	"    if (f.x >= z.x - eps && f.x + f.w <= z.x + z.w + eps) {\n"
	"      var inside = INVERTED ? f.y >= z.y : f.y <= z.y;\n"
	"      if (inside) { place(f, PAD + (f.x - z.x) * scale, f.w * scale, true); f.g.style.opacity = 1; return; }\n"
	"    }\n"
	"    var anc = f.x <= z.x + eps && f.x + f.w >= z.x + z.w - eps && (INVERTED ? f.y < z.y : f.y > z.y);\n"
	"    if (anc) { place(f, PAD, W - 2 * PAD, true); f.g.style.opacity = 0.6; }\n"
	"    else place(f, 0, 0, false);\n"
	"  });\n"
	"  if (searching) search(searching);\n"
	"}\n"
	"function unzoom() {\n"
	"  zoomed = null; resetbtn.style.opacity = 0;\n"
	"  frames.forEach(function (f) { place(f, f.x, f.w, true); f.g.style.opacity = 1; });\n"
	"  if (searching) search(searching);\n"
	"}\n"
	"function clearsearch() {\n"
	"  searching = null; matchedtxt.textContent = ' ';\n"
	"  document.getElementById('search').textContent = 'Search';\n"
	"  frames.forEach(function (f) { f.r.setAttribute('fill', f.fill); });\n"
	"}\n"
	"function search(re) {\n"
	"  var rx; try { rx = new RegExp(re); } catch (e) { alert('bad regular expression: ' + e); return; }\n"
	"  searching = re; document.getElementById('search').textContent = 'Clear';\n"
	"  var spans = [], root = frames[0];\n"
	"  frames.forEach(function (f) {\n"
	"    var hit = rx.test(f.name);\n"
	"    f.r.setAttribute('fill', hit ? 'rgb(230,0,230)' : f.fill);\n"
	"    if (hit) spans.push([f.x, f.x + f.w]);\n"
	"  });\n"
	"  spans.sort(function (a, b) { return a[0] - b[0]; });\n"
	"  var tot = 0, end = -1;\n"
	"  spans.forEach(function (s) { if (s[0] >= end) { tot += s[1] - s[0]; end = s[1]; } else if (s[1] > end) { tot += s[1] - end; end = s[1]; } });\n"
	"  var pct = root.w ? 100 * tot / root.w : 0;\n"
	"  matchedtxt.textContent = 'Matched: ' + pct.toFixed(2) + '%';\n"
	"  return pct;\n"
	"}\n"
	"]]></script>\n";

#define CHART_H 120 /* the memory chart above the frames */

/* Memory over time above the flamegraph (collect/timeline.h): the live heap
 * (each point the most live since the one before) and RSS, on one scale,
 * the peak marked. Nothing when the profile has no timeline. */
static bool write_chart(FILE *f, const struct profile *p, int64_t pid, int width, int y0, struct svg_chart *ch)
{
	bool multi = export__timeline_several(p);
	uint64_t t0 = UINT64_MAX, t1 = 0;
	double max = 1;
	int64_t peak = -1;
	uint64_t peak_t = 0;
	bool heap = false;
	for (size_t i = 0; i < p->npoints; i++) {
		const struct ppoint *pt = &p->points[i];
		if (!export__timeline_curve(pt, pid, multi))
			continue;
		t0 = pt->t_ns < t0 ? pt->t_ns : t0;
		t1 = pt->t_ns > t1 ? pt->t_ns : t1;
		if (pt->heap != TIMELINE_NO_HEAP) {
			heap = true;
			if (pt->heap > peak) {
				peak = pt->heap;
				peak_t = pt->t_ns;
			}
			max = (double)pt->heap > max ? (double)pt->heap : max;
		}
		if (pt->rss != TIMELINE_NO_RSS)
			max = (double)pt->rss > max ? (double)pt->rss : max;
	}
	if (t0 == UINT64_MAX)
		return false;
	if (p->start_ns && p->start_ns <= t0)
		t0 = p->start_ns; /* 0 s is the recording's start, as for --time */
	double span = t1 > t0 ? (double)(t1 - t0) : 1, x0 = 84, w = width - 104, h = CHART_H - 30;
	*ch = (struct svg_chart){.x0 = x0, .w = w, .t0_ns = t0, .span_ns = (uint64_t)span};
	fprintf(f, "<g id=\"memory\"><rect id=\"chart\" x=\"%.0f\" y=\"%d\" width=\"%.0f\" height=\"%.0f\" fill=\"#fff\" "
		   "stroke=\"#ccc\"/>\n", x0, y0, w, h);
	for (int pass = 0; pass < 2; pass++) { /* RSS, then the heap over it */
		if (pass == 1 && !heap)
			break;
		fprintf(f, "<polyline id=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"",
			pass ? "heap_curve" : "rss_curve", pass ? "#c0392b" : "#2e86c1");
		for (size_t i = 0; i < p->npoints; i++) {
			const struct ppoint *pt = &p->points[i];
			if (!export__timeline_curve(pt, pid, multi))
				continue;
			double v = pass ? (pt->heap == TIMELINE_NO_HEAP ? -1 : (double)pt->heap)
					: (pt->rss == TIMELINE_NO_RSS ? -1 : (double)pt->rss);
			if (v < 0)
				continue;
			fprintf(f, "%.1f,%.1f ", x0 + (double)(pt->t_ns - t0) / span * w, y0 + h - v / max * h);
		}
		fprintf(f, "\"/>\n");
	}
	char a[32], b[32];
	export__fmt_value(a, sizeof(a), KM_PEAK_BYTES, max);
	fprintf(f, "<text x=\"%.0f\" y=\"%d\" text-anchor=\"end\">%s</text>\n", x0 - 4, y0 + 10, a);
	fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">0</text>\n", x0 - 4, y0 + h);
	fprintf(f, "<text x=\"%.0f\" y=\"%.0f\">0 s</text><text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">%.2f s</text>\n",
		x0, y0 + h + 14, x0 + w, y0 + h + 14, span / 1e9);
	if (heap) {
		export__fmt_value(b, sizeof(b), KM_PEAK_BYTES, (double)peak);
		double px = x0 + (double)(peak_t - t0) / span * w, py = y0 + h - (double)peak / max * h;
		fprintf(f, "<circle id=\"peak_mark\" cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"#c0392b\"><title>peak %s at %.3f s</title></circle>\n",
			px, py, b, (double)(peak_t - t0) / 1e9);
		fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" fill=\"#c0392b\">heap (peak %s)</text>", x0 + 8, (double)y0 + 14, b);
	}
	fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" style=\"fill:#2e86c1\">RSS</text>\n</g>\n", x0 + 8, (double)y0 + (heap ? 28 : 14));
	return true;
}

/* The chart's stretch-of-time controls, and what they show (the script's
 * time part draws them once it has read #timedata). */
static void write_time_controls(FILE *f, int width, int y)
{
	fprintf(f, "<g id=\"timectl\" style=\"display:none\">"
		   "<text id=\"tmode\" class=\"btn\" x=\"84\" y=\"%d\"> </text>"
		   "<text id=\"tall\" class=\"btn\" x=\"%d\" y=\"%d\" text-anchor=\"end\" style=\"opacity:0\">Whole run</text>"
		   "<text id=\"trange\" x=\"%d\" y=\"%d\" text-anchor=\"end\"> </text></g>\n",
		y, width - 20, y, width - 110, y);
}

static void write_svg(FILE *f, struct tree *t, const struct svg_opts *o, int metric, bool diff, const char *title,
		      const char *subtitle, const struct profile *chart, int64_t chart_pid, const uint32_t *leaf)
{
	struct layout L = {.f = f, .t = t, .o = o, .metric = metric, .diff = diff, .xpad = 10, .frame_h = 16};
	int width = o->width > 0 ? o->width : 1200;
	L.total = t->n[0].value;
	L.top = 60 + (chart && chart->npoints ? CHART_H : 0);
	L.scale = L.total > 0 ? (double)(width - 20) / (double)L.total : 0;
	L.rows = readable_rows(t, 0, 0, L.scale);
	if (L.rows > SVG_MAX_ROWS)
		L.rows = SVG_MAX_ROWS;
	L.height = L.rows * L.frame_h + L.top + 50;
	if (diff)
		for (size_t i = 1; i < t->len; i++) {
			int64_t d = t->n[i].value - t->n[i].base;
			if (d < 0)
				d = -d;
			if (d > L.max_abs)
				L.max_abs = d;
		}
	fprintf(f, "<?xml version=\"1.0\" standalone=\"no\"?>\n"
		   "<svg version=\"1.1\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" onload=\"init(evt)\" "
		   "xmlns=\"http://www.w3.org/2000/svg\" xmlns:xlink=\"http://www.w3.org/1999/xlink\">\n",
		width, L.height, width, L.height);
	fprintf(f, "<!-- kiln flamegraph: frames are <g> elements under #frames; title text is "
		   "'name (value, percent) file:line' -->\n");
	fprintf(f, "<style type=\"text/css\">text { font-family: monospace; font-size: 12px; fill: #000; }\n"
		   "#frames g:hover rect { stroke: #000; stroke-width: 0.5; cursor: pointer; }\n"
		   "#frames text { pointer-events: none; }\n"
		   ".btn { cursor: pointer; fill: #333; } #title { font-size: 17px; }\n</style>\n");
	fprintf(f, "<script type=\"text/ecmascript\">var INVERTED = %s, CHAR_W = %.1f, TOP = %d, FRAME_H = %d, "
		   "MAX_ROWS = %d;</script>\n",
		o->inverted ? "true" : "false", SVG_CHAR_W, L.top, L.frame_h, SVG_MAX_ROWS);
	fputs(script, f);
	if (leaf && chart && chart->nwins)
		fputs(svg_time_script, f);
	fprintf(f, "<rect id=\"bg\" x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#f8f8f4\"/>\n", width, L.height);
	fprintf(f, "<text id=\"title\" x=\"%d\" y=\"24\" text-anchor=\"middle\">", width / 2);
	xml_escape(f, title, 500);
	fprintf(f, "</text>\n<text x=\"%d\" y=\"44\" text-anchor=\"middle\">", width / 2);
	xml_escape(f, subtitle, 500);
	fprintf(f, "</text>\n");
	struct svg_chart ch;
	if (chart && chart->npoints && write_chart(f, chart, chart_pid, width, 56, &ch) && leaf &&
	    svg_time_data(f, chart, t, leaf, metric, &ch))
		write_time_controls(f, width, 56 + CHART_H - 2);
	fprintf(f, "<text id=\"reset\" class=\"btn\" x=\"10\" y=\"24\" style=\"opacity:0\">Reset Zoom</text>\n");
	fprintf(f, "<text id=\"search\" class=\"btn\" x=\"%d\" y=\"24\" text-anchor=\"end\">Search</text>\n", width - 10);
	fprintf(f, "<text id=\"matched\" x=\"%d\" y=\"%d\" text-anchor=\"end\"> </text>\n", width - 10, L.height - 12);
	fprintf(f, "<text id=\"details\" x=\"10\" y=\"%d\"> </text>\n", L.height - 12);
	fprintf(f, "<g id=\"frames\">\n");
	if (L.total > 0)
		emit(&L, 0, 0, 0);
	fprintf(f, "</g>\n</svg>\n");
}

int export__svg(FILE *f, const struct profile *p, const struct view_filter *vf, const struct svg_opts *o)
{
	struct tree t;
	tree_init(&t);
	t.name_of_sid = xcalloc(p->strings.n + 1, sizeof(*t.name_of_sid));
	bool multi = view__multi_process(p);
	const struct pframe *fr[PROFILE_MAX_FRAMES];
	struct tframe tf[PROFILE_MAX_FRAMES + 2];
	char pname[300], tname[300];
	uint64_t ncells = 0;
	/* the cells a stretch of time may show (time windows), drawn as 0 here */
	uint32_t *leaf = xmalloc((p->ncells + 1) * sizeof(*leaf));
	bool *timed = xcalloc(p->ncells + 1, sizeof(*timed));
	int ser[2];
	svg_time_series(vf->metric, &ser[0], &ser[1]);
	for (size_t i = 0; i < p->nwents; i++)
		if (p->wents[i].metric == ser[0] || p->wents[i].metric == ser[1])
			timed[p->wents[i].cell] = true;
	for (size_t ci = 0; ci < p->ncells; ci++) {
		const struct pcell *c = &p->cells[ci];
		leaf[ci] = UINT32_MAX;
		bool selected = view__cell_selected(c, vf);
		if (!selected && !(timed[ci] && (vf->pid < 0 || c->pid == (uint64_t)vf->pid) &&
				   (vf->tid < 0 || c->tid == (uint64_t)vf->tid)))
			continue;
		ncells += selected;
		size_t k = 0;
		if (multi) {
			snprintf(pname, sizeof(pname), "%s-%u", profile__process_name(p, c->pid), c->pid);
			tf[k++] = (struct tframe){.name = pname, .kind = FK_MARKER, .sid = UINT32_MAX};
		}
		if (vf->threads) {
			const struct pthread *th = profile__thread(p, c->pid, c->tid);
			snprintf(tname, sizeof(tname), "%s-%u", th && th->name && *th->name ? th->name : "thread", c->tid);
			tf[k++] = (struct tframe){.name = tname, .kind = FK_MARKER, .sid = UINT32_MAX};
		}
		size_t n = profile__stack_frames(p, c->stack, fr, PROFILE_MAX_FRAMES);
		for (size_t i = 0; i < n; i++)
			tf[k++] = (struct tframe){.name = profile__str(p, fr[i]->name), .file = profile__str(p, fr[i]->file),
						  .line = fr[i]->line, .kind = fr[i]->kind, .sid = fr[i]->name};
		leaf[ci] = tree_add(&t, tf, k, selected ? c->v[vf->metric] : 0, 0);
	}
	char title[600], sub[700], total[32], est[80];
	if (o->title)
		snprintf(title, sizeof(title), "%s", o->title);
	else
		snprintf(title, sizeof(title), "%s of %s", kiln_metric__name(vf->metric), *p->program ? p->program : p->path);
	export__fmt_value(total, sizeof(total), vf->metric, (double)t.n[0].value);
	char range[96] = "";
	if (p->ranged)
		snprintf(range, sizeof(range), " in %.3f-%.3f s (--time)", p->range_from, p->range_to);
	snprintf(sub, sizeof(sub), "%s%s: %s%s; %.2f s, %" PRIu64 " samples, %" PRIu64 " stacks%s",
		 kiln_metric__name(vf->metric), export__estimated(p, vf->metric, est, sizeof(est)), total,
		 *range ? range : " in all", profile__duration(p), p->samples, ncells,
		 t.n[0].value < 0 ? " (negative values not drawn)" : "");
	write_svg(f, &t, o, vf->metric, false, title, sub, p, vf->pid, leaf);
	free(leaf);
	free(timed);
	tree_release(&t);
	return ferror(f) ? -1 : 0;
}

static void add_folded_line(struct tree *t, const char *line, int64_t v, int64_t base)
{
	char *copy = xstrdup(line);
	struct tframe tf[PROFILE_MAX_FRAMES + 2];
	size_t n = 0;
	char *save = NULL;
	for (char *s = strtok_r(copy, ";", &save); s && n < ARRAY_SIZE(tf); s = strtok_r(NULL, ";", &save))
		tf[n++] = (struct tframe){.name = s, .kind = FK_PROGRAM, .sid = UINT32_MAX};
	tree_add(t, tf, n, v, base);
	free(copy);
}

int export__svg_diff(FILE *f, const struct folded *base, const struct folded *new_, int metric,
		     const struct svg_opts *o)
{
	struct tree t;
	tree_init(&t);
	for (size_t i = 0; i < new_->lines.n; i++) {
		const char *k = intern__cstr(&new_->lines, (uint32_t)i);
		int64_t b = intern__get(&base->lines, k, (uint32_t)strlen(k));
		add_folded_line(&t, k, new_->vals[i], b < 0 ? 0 : base->vals[b]);
	}
	for (size_t i = 0; i < base->lines.n; i++) {
		const char *k = intern__cstr(&base->lines, (uint32_t)i);
		if (intern__get(&new_->lines, k, (uint32_t)strlen(k)) < 0)
			add_folded_line(&t, k, 0, base->vals[i]);
	}
	char title[300], sub[300], a[32], b[32];
	snprintf(title, sizeof(title), "%s", o->title ? o->title : "kiln differential flamegraph");
	export__fmt_value(a, sizeof(a), metric, (double)base->sum);
	export__fmt_value(b, sizeof(b), metric, (double)new_->sum);
	snprintf(sub, sizeof(sub), "%s: base %s, new %s; width = new, red = grew, blue = shrank",
		 kiln_metric__name(metric), a, b);
	write_svg(f, &t, o, metric, true, title, sub, NULL, -1, NULL);
	tree_release(&t);
	return ferror(f) ? -1 : 0;
}
