// A stretch of time chosen on a heap flamegraph's memory chart, as a person
// would: drag across the chart from FROM to TO seconds, read the flamegraph
// drawn again, switch to "live at its end", then go back to the whole run.
// usage: node time_select.mjs HEAP.svg FROM TO   (TO "end": past the chart's
// right edge, as a person drags to the run's end; the stretch is clamped there)
// prints: "in FROM TO TOTAL grow_a grow_b", "live FROM TO TOTAL grow_a grow_b"
// (the stretch as widened to its windows' edges, full precision; the frames'
// exact values from their data-v), "whole FRAMES"
import { open, fail, frame } from './open.mjs';

const [svgf, t0, t1] = process.argv.slice(2);
const { browser, page, errors } = await open(800);
await page.goto('file://' + svgf, { waitUntil: 'load' });
const home = await page.locator('#frames > g').count();
const td = await page.evaluate(() => { const d = JSON.parse(document.getElementById('timedata').textContent);
  return { x0: d.x0, w: d.w, span: d.span, live: d.live }; });
if (!td.live) fail('a heap flamegraph without its live series');
const chart = await page.locator('#chart').boundingBox();
const xs = (t) => t === 'end' ? chart.x + (td.x0 - 84) + td.w + 6 // 6 px right of the chart
  : chart.x + (td.x0 - 84) + (+t / td.span) * td.w; // the chart rect starts at x0
const y = chart.y + chart.height / 2;
// a drag that starts on what is drawn over the chart (the heap's curve, the
// peak's mark) chooses a stretch as one started on the chart's background
for (const what of ['#heap_curve', '#peak_mark']) {
  const p = await page.evaluate((s) => {
    const e = document.querySelector(s), m = e.getScreenCTM();
    let x, y;
    if (e.tagName === 'circle') { x = +e.getAttribute('cx'); y = +e.getAttribute('cy'); }
    else { const P = e.points, q = P.getItem(Math.floor(P.numberOfItems / 2)); x = q.x; y = q.y; }
    const cx = m.a * x + m.c * y + m.e, cy = m.b * x + m.d * y + m.f, hit = document.elementFromPoint(cx, cy);
    return { x: cx, y: cy, hit: hit ? (hit.id || hit.tagName) : null };
  }, what);
  if ('#' + p.hit !== what) fail(`${what}: the point pressed is on ${p.hit}, not on ${what}`);
  await page.mouse.move(p.x, p.y);
  await page.mouse.down();
  await page.mouse.move(p.x - 40, y, { steps: 4 });
  await page.mouse.up();
  if (!(await page.evaluate(() => !!T.cur))) fail(`a drag started on ${what} chose no stretch`);
  if (!(await page.locator('#tsel').isVisible())) fail(`a drag started on ${what}: the stretch is not shown`);
  await page.locator('#tall').click();
  if (await page.evaluate(() => !!T.cur)) fail('"Whole run" left a stretch chosen');
}
await page.mouse.move(xs(t0), y);
await page.mouse.down();
await page.mouse.move((xs(t0) + xs(t1)) / 2, y, { steps: 4 });
await page.mouse.move(xs(t1), y, { steps: 4 });
await page.mouse.up();
const val = async (name) => {
  const g = page.locator('#frames > g', { has: page.locator('title', { hasText: new RegExp('^' + name + ' \\(') }) });
  return (await g.count()) ? await g.first().getAttribute('data-v') : '0';
};
const state = async (mode) => {
  const cur = await page.evaluate(() => T.cur);
  if (!cur) fail('the drag chose no stretch');
  const root = await val('all');
  console.log(`${mode} ${cur.from.toFixed(9)} ${cur.to.toFixed(9)} ${root} ${await val('grow_a')} ${await val('grow_b')}`);
};
if (!(await page.locator('#tsel').isVisible())) fail('the chosen stretch is not shown on the chart');
const label = await page.locator('#trange').textContent();
if (!/^alloc_bytes in [\d.]+-[\d.]+ s: /.test(label)) fail('the stretch is not said: ' + label);
await state('in');
// hover and zoom still work on the frames drawn again
const fa = frame(page, 'main');
await fa.hover();
if (!/^main \(/.test(await page.locator('#details').textContent())) fail('hover on a redrawn frame');
// drawn in the colours of the whole run's frames
const fillOf = async (name) => frame(page, name).locator('rect').getAttribute('fill');
const redrawn = await fillOf('grow_b');
await page.locator('#tall').click();
if ((await fillOf('grow_b')) !== redrawn) fail(`grow_b's colour: ${redrawn} redrawn, ${await fillOf('grow_b')} in the whole run`);
await page.mouse.move(xs(t0), y);
await page.mouse.down();
await page.mouse.move(xs(t1), y, { steps: 4 });
await page.mouse.up();
await page.locator('#tmode').click();
await state('live');
await page.locator('#tall').click();
const back = await page.locator('#frames > g').count();
console.log(`whole ${back} ${home}`);
if (errors.length) fail('page errors: ' + errors.join('; '));
await browser.close();
