// Opens kiln SVG flamegraphs in headless Chromium and uses them as a person
// would: hover a frame, click to zoom, reset, search; times a large one.
// usage: node flamegraph.mjs SMALL.svg SCREENSHOT.png [LARGE.svg]
import { open, fail, frame as frameOf } from './open.mjs';

const [small, shot, large] = process.argv.slice(2);
const { browser, page, errors } = await open(700);
await page.goto('file://' + small, { waitUntil: 'load' });
const n = await page.locator('#frames > g').count();
if (shot) {
  const box = await page.locator('svg').first().boundingBox();
  await page.screenshot({ path: shot, clip: { x: 0, y: 0, width: box.width, height: box.height } });
}
if (n < 10) fail(`only ${n} frames`);

const frame = (name) => frameOf(page, name);
const width = async (name) => parseFloat(await frame(name).locator('rect').getAttribute('width'));

await frame('frame_a').hover();
const details = await page.locator('#details').textContent();
if (!/^frame_a \(\d+, [\d.]+%\) .*cpu_split\.c:\d+/.test(details)) fail('hover details: ' + details);
console.log('ok: hover shows "' + details + '"');

const before = await width('frame_a');
await frame('frame_a').click();
const zoomed = await width('frame_a');
if (!(zoomed > 1150 && zoomed > before * 1.4)) fail(`zoom: frame_a ${before} -> ${zoomed}`);
if (await frame('frame_b').isVisible()) fail('zoom: frame_b still shown');
console.log(`ok: click zooms frame_a from ${before.toFixed(0)} to ${zoomed.toFixed(0)} px`);
await page.locator('#reset').click();
const back = await width('frame_a');
if (Math.abs(back - before) > 0.5) fail(`reset: ${back} vs ${before}`);
if (!(await frame('frame_b').isVisible())) fail('reset: frame_b hidden');
console.log('ok: reset zoom');

page.once('dialog', (d) => d.accept('^frame_a$'));
await page.locator('#search').click();
const matched = await page.locator('#matched').textContent();
const pct = parseFloat(matched.replace(/[^\d.]/g, ''));
if (!(pct > 54 && pct < 66)) fail('search: ' + matched);
const hot = await page.locator('#frames rect[fill="rgb(230,0,230)"]').count();
if (hot < 1) fail('search highlights nothing');
console.log(`ok: search ^frame_a$: ${matched}, ${hot} frames highlighted`);
page.once('dialog', () => {});
await page.locator('#search').click(); // clears
if ((await page.locator('#matched').textContent()).trim() !== '') fail('search not cleared');

if (large) {
  const t0 = Date.now();
  await page.goto('file://' + large, { waitUntil: 'load' });
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  const ms = Date.now() - t0;
  const m = await page.locator('#frames > g').count();
  if (ms > 2000) fail(`large flamegraph took ${ms} ms to render`);
  const first = page.locator('#frames > g').nth(5);
  await first.click();
  console.log(`ok: large flamegraph: ${m} frames rendered in ${ms} ms, zoom works`);
}
if (errors.length) fail('page errors: ' + errors.join('; '));
await browser.close();
console.log('browser: 1 passed, 0 failed');
