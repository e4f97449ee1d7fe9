/* The SVG flamegraph's time data (svg_int.h): what the embedded script
 * needs to draw the flamegraph again for a stretch of time. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include "export/svg_int.h"

#define SVG_TIME_GROUPS 400          /* stretches of time the chart can tell apart */
#define SVG_TIME_MAX_PAIRS 3000000   /* (node, delta) pairs in all: fewer groups past it */
#define SVG_TIME_MAX_NODES 300000    /* a larger tree gets no time data (said on the chart) */

/* A JSON string inside an XML element: JSON's escapes, then XML's. */
static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		switch (c) {
		case '"': fputs("\\\"", f); break;
		case '\\': fputs("\\\\", f); break;
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '&': fputs("&amp;", f); break;
		default:
			if (c < 0x20)
				fprintf(f, "\\u%04x", c);
			else
				fputc(c, f);
		}
	}
	fputc('"', f);
}

/* The two series a metric's flamegraph can show for a stretch: what came in
 * it (*in) and, for the heap, what was live at its end (*live, -1: none). */
void svg_time_series(int metric, int *in, int *live)
{
	if (metric == KM_CPU || metric == KM_WALL) {
		*in = metric;
		*live = -1;
		return;
	}
	bool count = metric == KM_ALLOC_COUNT || metric == KM_LEAK_COUNT || metric == KM_TEMP_COUNT ||
		     metric == KM_LIVE_COUNT;
	*in = count ? KM_ALLOC_COUNT : KM_ALLOC_BYTES;
	*live = count ? KM_LIVE_COUNT : KM_LIVE_BYTES;
}

struct acc {
	int64_t *v[2];
	uint32_t *touched;
	size_t ntouched;
	bool *on;
};

/* Group ends: windows merged so each group spans at least 1/groups of the
 * recording. Returns how many groups; end[g] is the last window of g. */
static size_t make_groups(const struct profile *p, size_t groups, size_t *end)
{
	double span = profile__window_end(p, p->nwins - 1), start = 0;
	size_t g = 0;
	for (size_t i = 0; i < p->nwins; i++) {
		double e = profile__window_end(p, i);
		if (i == p->nwins - 1 || e - start >= span / (double)groups) {
			end[g++] = i;
			start = e;
		}
	}
	return g;
}

/* Sum group g's entries per node into a; the number of (node, delta) pairs. */
static size_t group_sum(const struct profile *p, const uint32_t *leaf, size_t nleaf, size_t w0, size_t w1,
			const int ser[2], struct acc *a)
{
	for (size_t w = w0; w <= w1; w++)
		for (size_t k = p->wins[w].first; k < p->wins[w].first + p->wins[w].n; k++) {
			const struct pwent *e = &p->wents[k];
			if (e->cell >= nleaf || leaf[e->cell] == UINT32_MAX)
				continue;
			for (int s = 0; s < 2; s++) {
				if (e->metric != ser[s])
					continue;
				uint32_t node = leaf[e->cell];
				if (!a->on[node]) {
					a->on[node] = true;
					a->touched[a->ntouched++] = node;
				}
				SAT_ADD(a->v[s][node], e->delta);
			}
		}
	size_t pairs = 0;
	for (size_t i = 0; i < a->ntouched; i++)
		for (int s = 0; s < 2; s++)
			pairs += a->v[s][a->touched[i]] != 0;
	return pairs;
}

static void group_clear(struct acc *a)
{
	for (size_t i = 0; i < a->ntouched; i++) {
		uint32_t n = a->touched[i];
		a->on[n] = false;
		a->v[0][n] = a->v[1][n] = 0;
	}
	a->ntouched = 0;
}

/* The script's time part (svg.c's script calls timeinit, and lends it
 * svg, W, frames, collect, label, search, zoomed, resetbtn). */
const char svg_time_script[] =
	"<script type=\"text/ecmascript\"><![CDATA[\n"
	"// The stretch of time chosen on the memory chart (#timedata, svg_time.c):\n"
	"// the flamegraph drawn again for what came in it, or what was live at its end.\n"
	"var T = null;\n"
	"function svgel(tag, attrs) {\n"
	"  var e = document.createElementNS('http://www.w3.org/2000/svg', tag);\n"
	"  for (var k in attrs) e.setAttribute(k, attrs[k]);\n"
	"  return e;\n"
	"}\n"
	"function fmtv(v) {\n"
	"  if (!T.bytes) return String(Math.round(v));\n"
	"  var u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'], i = 0, a = Math.abs(v);\n"
	"  while (a >= 1024 && i < 4) { a /= 1024; v /= 1024; i++; }\n"
	"  return (i ? v.toFixed(2) : v.toFixed(0)) + ' ' + u[i];\n"
	"}\n"
	"// a frame's fill as svg_kind_colour (svg.c) makes it, from its kind and its name's shade\n"
	"function fill(k) {\n"
	"  var kind = T.kind[k];\n"
	"  if (kind === 255) return 'rgb(210,210,210)';\n"
	"  var h = T.shade[T.name[k]], r1 = (h & 255) / 255, r2 = ((h >> 8) & 255) / 255, f = Math.floor, c;\n"
	"  switch (kind) {\n"
	"  case 1: c = [200 + f(55 * r1), 150 + f(60 * r2), 40 + f(40 * r1)]; break;\n"
	"  case 2: c = [90 + f(40 * r1), 140 + f(50 * r2), 215 + f(40 * r1)]; break;\n"
	"  case 3: c = [60 + f(60 * r1), 190 + f(55 * r2), 60 + f(50 * r1)]; break;\n"
	"  case 4: c = [80 + f(50 * r1), 190 + f(50 * r2), 200 + f(50 * r1)]; break;\n"
	"  case 5: c = [170 + f(30 * r1), 170 + f(30 * r1), 170 + f(30 * r1)]; break;\n"
	"  case 6: c = [170 + f(50 * r1), 110 + f(50 * r2), 210 + f(40 * r1)]; break;\n"
	"  default: c = [225 + f(30 * r1), 90 + f(90 * r2), 40 + f(30 * r1)];\n"
	"  }\n"
	"  return 'rgb(' + c.join(',') + ')';\n"
	"}\n"
	"function timeinit() {\n"
	"  var el = document.getElementById('timedata');\n"
	"  if (!el) return;\n"
	"  var d = JSON.parse(el.textContent);\n"
	"  if (d.off) {\n"
	"    document.getElementById('timectl').style.display = '';\n"
	"    document.getElementById('trange').textContent = 'no selection of time: ' + d.off + ' frames are too many (kiln report --time)';\n"
	"    return;\n"
	"  }\n"
	"  T = d;\n"
	"  var n = d.par.length, i;\n"
	"  T.kids = [];\n"
	"  for (i = 0; i < n; i++) T.kids.push([]);\n"
	"  for (i = 1; i < n; i++) T.kids[d.par[i]].push(i);\n"
	"  var nm = function (k) { return d.names[d.name[k]]; };\n"
	"  T.kids.forEach(function (ks) { ks.sort(function (a, b) { var x = nm(a), y = nm(b); return x < y ? -1 : x > y ? 1 : 0; }); });\n"
	"  T.home = document.getElementById('frames').cloneNode(true);\n"
	"  T.h = +svg.getAttribute('height');\n"
	"  document.getElementById('timectl').style.display = '';\n"
	"  var mem = document.getElementById('memory'), chart = document.getElementById('chart');\n"
	"  T.sel = svgel('rect', {id: 'tsel', x: 0, y: chart.getAttribute('y'), width: 0, height: chart.getAttribute('height'),\n"
	"                         fill: 'rgba(40,40,40,0.15)', stroke: '#555', 'stroke-width': 0.5});\n"
	"  T.sel.style.display = 'none';\n"
	"  mem.appendChild(T.sel);\n"
	"  var drag = null;\n"
	"  var sx = function (e) { var pt = svg.createSVGPoint(); pt.x = e.clientX; pt.y = e.clientY; return pt.matrixTransform(svg.getScreenCTM().inverse()).x; };\n"
	"  var tx = function (x) { return Math.max(0, Math.min(T.span, (x - T.x0) / T.w * T.span)); };\n"
	"  var down = function (e) { drag = sx(e); e.preventDefault(); };\n"
	"  // the whole chart group: a drag may start on a curve, the peak's mark or a label over the chart\n"
	"  mem.addEventListener('mousedown', down);\n"
	"  mem.style.cursor = 'crosshair';\n"
	"  svg.addEventListener('mousemove', function (e) {\n"
	"    if (drag === null) return;\n"
	"    var x = sx(e), a = Math.max(T.x0, Math.min(drag, x)), b = Math.min(T.x0 + T.w, Math.max(drag, x));\n"
	"    T.sel.style.display = ''; T.sel.setAttribute('x', a); T.sel.setAttribute('width', Math.max(0, b - a));\n"
	"  });\n"
	"  svg.addEventListener('mouseup', function (e) {\n"
	"    if (drag === null) return;\n"
	"    var x = sx(e), a = tx(Math.min(drag, x)), b = tx(Math.max(drag, x));\n"
	"    drag = null;\n"
	"    tselect(a, b);\n"
	"  });\n"
	"  document.getElementById('tmode').addEventListener('click', function () {\n"
	"    if (!T.live) return;\n"
	"    T.mode = T.mode === 'in' ? 'live' : 'in';\n"
	"    if (T.cur) tselect(T.cur.from, T.cur.to); else modelabel();\n"
	"  });\n"
	"  document.getElementById('tall').addEventListener('click', whole);\n"
	"  modelabel();\n"
	"  document.getElementById('trange').textContent = 'drag across the chart to choose a stretch of time';\n"
	"  window.kilnTime = {select: tselect, whole: whole, mode: function (m) { T.mode = m; modelabel(); }};\n"
	"}\n"
	"function modelabel() {\n"
	"  var t = document.getElementById('tmode');\n"
	"  if (!T.live) { t.textContent = T.in + ' in the stretch'; return; }\n"
	"  t.textContent = T.mode === 'in' ? T.in + ' in the stretch (click: ' + T.live + ' at its end)'\n"
	"                                  : T.live + ' at the stretch\\'s end (click: ' + T.in + ' in it)';\n"
	"}\n"
	"// [from, to] seconds, widened to the edges of the windows it touches (as kiln --time)\n"
	"function tselect(from, to) {\n"
	"  var E = T.edges, a = 0, b = -1, i;\n"
	"  for (i = 0; i < E.length; i++) if (E[i] <= from) a = i + 1;\n"
	"  for (i = E.length - 1; i >= a; i--) if (E[i] >= to) b = i;\n"
	"  if (b < 0) b = E.length - 1;\n"
	"  if (b < a) { if (a >= E.length) a = E.length - 1; b = a; }\n"
	"  var f0 = a ? E[a - 1] : 0, f1 = E[b], n = T.par.length, v = new Float64Array(n);\n"
	"  var live = T.mode === 'live' && T.live, G = live ? T.glive : T.gin;\n"
	"  for (var g = live ? 0 : a; g <= b; g++) {\n"
	"    var L = G[g];\n"
	"    for (var k = 0; k < L.length; k += 2) v[L[k]] += L[k + 1];\n"
	"  }\n"
	"  for (i = n - 1; i > 0; i--) { if (v[i] < 0) v[i] = 0; v[T.par[i]] += v[i]; }\n"
	"  if (v[0] < 0) v[0] = 0;\n"
	"  T.cur = {from: f0, to: f1};\n"
	"  draw(v);\n"
	"  T.sel.style.display = '';\n"
	"  var xa = T.x0 + Math.min(f0, T.span) / T.span * T.w, xb = T.x0 + Math.min(f1, T.span) / T.span * T.w;\n"
	"  T.sel.setAttribute('x', xa); T.sel.setAttribute('width', Math.max(1, xb - xa));\n"
	"  document.getElementById('tall').style.opacity = 1;\n"
	"  modelabel();\n"
	"  var what = live ? T.live + ' at ' + f1.toFixed(3) + ' s' : T.in + ' in ' + f0.toFixed(3) + '-' + f1.toFixed(3) + ' s';\n"
	"  document.getElementById('trange').textContent = what + ': ' + fmtv(v[0]);\n"
	"  return {from: f0, to: f1, total: v[0], mode: live ? 'live' : 'in'};\n"
	"}\n"
	"function draw(v) {\n"
	"  var old = document.getElementById('frames'), fr = svgel('g', {id: 'frames'});\n"
	"  var total = v[0], scale = total > 0 ? (W - 20) / total : 0, rows = 1;\n"
	"  var depthof = function (k, d) {\n"
	"    if (d + 1 > rows) rows = d + 1;\n"
	"    if (d + 1 >= MAX_ROWS) return;\n"
	"    T.kids[k].forEach(function (c) { if (v[c] * scale >= 0.5) depthof(c, d + 1); });\n"
	"  };\n"
	"  if (total > 0) depthof(0, 0);\n"
	"  var h = Math.max(T.h, rows * FRAME_H + TOP + 50);\n"
	"  resize(h);\n"
	"  var put = function (k, x, d) {\n"
	"    var w = v[k] * scale;\n"
	"    if (d > 0 && w < 0.5) return;\n"
	"    var y = INVERTED ? TOP + d * FRAME_H : h - 40 - (d + 1) * FRAME_H;\n"
	"    var g = svgel('g', {'data-v': String(v[k])}), t = svgel('title', {});\n"
	"    var name = T.names[T.name[k]];\n"
	"    t.textContent = name + ' (' + fmtv(v[k]) + ', ' + (total ? 100 * v[k] / total : 0).toFixed(2) + '%)' +\n"
	"                    (T.file[k] >= 0 ? ' ' + T.names[T.file[k]] + ':' + T.line[k] : '');\n"
	"    g.appendChild(t);\n"
	"    g.appendChild(svgel('rect', {x: (x + 10).toFixed(1), y: y, width: w.toFixed(1), height: FRAME_H - 1, fill: fill(k), rx: 2}));\n"
	"    g.appendChild(svgel('text', {x: (x + 13).toFixed(1), y: y + FRAME_H - 4}));\n"
	"    fr.appendChild(g);\n"
	"    if (d + 1 >= MAX_ROWS) return;\n"
	"    var cx = x;\n"
	"    T.kids[k].forEach(function (c) { put(c, cx, d + 1); cx += v[c] * scale; });\n"
	"  };\n"
	"  if (total > 0) put(0, 0, 0);\n"
	"  old.parentNode.replaceChild(fr, old);\n"
	"  rebuilt();\n"
	"  frames.forEach(function (f) { label(f, f.w); });\n"
	"}\n"
	"function whole() {\n"
	"  var old = document.getElementById('frames');\n"
	"  old.parentNode.replaceChild(T.home.cloneNode(true), old);\n"
	"  resize(T.h);\n"
	"  T.cur = null; T.sel.style.display = 'none';\n"
	"  document.getElementById('tall').style.opacity = 0;\n"
	"  document.getElementById('trange').textContent = 'drag across the chart to choose a stretch of time';\n"
	"  rebuilt();\n"
	"}\n"
	"// the picture's height for h px of frames and texts\n"
	"function resize(h) {\n"
	"  svg.setAttribute('height', h); svg.setAttribute('viewBox', '0 0 ' + W + ' ' + h);\n"
	"  document.getElementById('bg').setAttribute('height', h);\n"
	"  document.getElementById('details').setAttribute('y', h - 12);\n"
	"  document.getElementById('matched').setAttribute('y', h - 12);\n"
	"}\n"
	"// new frames under #frames: hover, zoom and search take them\n"
	"function rebuilt() {\n"
	"  collect();\n"
	"  zoomed = null; resetbtn.style.opacity = 0;\n"
	"  if (searching) search(searching);\n"
	"}\n"
	"]]></script>\n";

bool svg_time_data(FILE *f, const struct profile *p, const struct tree *t, const uint32_t *leaf, int metric,
		   const struct svg_chart *ch)
{
	if (!p->nwins || !ch)
		return false;
	if (t->len > SVG_TIME_MAX_NODES) {
		fprintf(f, "<script id=\"timedata\" type=\"application/json\">{\"off\":%zu}</script>\n", t->len);
		return true; /* the controls say so */
	}
	int ser[2];
	svg_time_series(metric, &ser[0], &ser[1]);
	struct acc a = {.v = {xcalloc(t->len, sizeof(int64_t)), xcalloc(t->len, sizeof(int64_t))},
			.touched = xmalloc(t->len * sizeof(uint32_t)), .on = xcalloc(t->len, sizeof(bool))};
	size_t *end = xmalloc(p->nwins * sizeof(size_t)), ng = 0;
	for (size_t groups = SVG_TIME_GROUPS;; groups /= 2) {
		ng = make_groups(p, groups, end);
		size_t pairs = 0;
		for (size_t g = 0; g < ng && pairs <= SVG_TIME_MAX_PAIRS; g++) {
			pairs += group_sum(p, leaf, p->ncells, g ? end[g - 1] + 1 : 0, end[g], ser, &a);
			group_clear(&a);
		}
		if (pairs <= SVG_TIME_MAX_PAIRS || groups <= 1)
			break;
	}
	fprintf(f, "<script id=\"timedata\" type=\"application/json\">{\"metric\":\"%s\",\"in\":\"%s\",\"live\":%s%s%s,"
		   "\"bytes\":%s,\"mode\":\"%s\",\"x0\":%.1f,\"w\":%.1f,\"span\":%.9f,\"edges\":[",
		kiln_metric__name(metric), kiln_metric__name(ser[0]), ser[1] < 0 ? "" : "\"",
		ser[1] < 0 ? "null" : kiln_metric__name(ser[1]), ser[1] < 0 ? "" : "\"",
		kiln_metric__is_bytes(ser[0]) ? "true" : "false",
		metric == KM_CPU || metric == KM_WALL || metric == KM_ALLOC_BYTES || metric == KM_ALLOC_COUNT ? "in" : "live",
		ch->x0, ch->w, (double)ch->span_ns / 1e9);
	for (size_t g = 0; g < ng; g++)
		fprintf(f, "%s%.9f", g ? "," : "", profile__window_end(p, end[g]) - profile__seconds(p, ch->t0_ns));
	fputs("],\"par\":[", f);
	for (size_t i = 0; i < t->len; i++)
		fprintf(f, "%s%d", i ? "," : "", i ? (int)t->n[i].parent : -1);
	fputs("],\"name\":[", f);
	for (size_t i = 0; i < t->len; i++)
		fprintf(f, "%s%u", i ? "," : "", t->n[i].name);
	fputs("],\"file\":[", f);
	for (size_t i = 0; i < t->len; i++)
		fprintf(f, "%s%d", i ? "," : "", t->n[i].file ? (int)t->n[i].file : -1);
	fputs("],\"line\":[", f);
	for (size_t i = 0; i < t->len; i++)
		fprintf(f, "%s%u", i ? "," : "", t->n[i].line);
	/* colours as svg_kind_colour makes them: the kind of each node, the
	 * shade of each name (its hash's low 16 bits) */
	fputs("],\"kind\":[", f);
	for (size_t i = 0; i < t->len; i++)
		fprintf(f, "%s%u", i ? "," : "", i ? t->n[i].kind : 255u);
	fputs("],\"shade\":[", f);
	for (size_t i = 0; i < t->names.n; i++) {
		const char *nm = intern__cstr(&t->names, (uint32_t)i);
		fprintf(f, "%s%u", i ? "," : "", (unsigned)(hash_bytes(nm, strlen(nm)) & 0xffff));
	}
	fputs("],\"names\":[", f);
	for (size_t i = 0; i < t->names.n; i++) {
		if (i)
			fputc(',', f);
		json_str(f, intern__cstr(&t->names, (uint32_t)i));
	}
	for (int s = 0; s < 2; s++) {
		fprintf(f, "],\"g%s\":[", s ? "live" : "in");
		for (size_t g = 0; g < ng; g++) {
			fprintf(f, "%s[", g ? "," : "");
			if (ser[s] >= 0) {
				group_sum(p, leaf, p->ncells, g ? end[g - 1] + 1 : 0, end[g], ser, &a);
				bool first = true;
				for (size_t i = 0; i < a.ntouched; i++) {
					int64_t d = a.v[s][a.touched[i]];
					if (!d)
						continue;
					fprintf(f, "%s%u,%" PRId64, first ? "" : ",", a.touched[i], d);
					first = false;
				}
				group_clear(&a);
			}
			fputc(']', f);
		}
	}
	fputs("]}</script>\n", f);
	free(end);
	free(a.v[0]);
	free(a.v[1]);
	free(a.touched);
	free(a.on);
	return true;
}
