// Headless Chromium (playwright-core) for the browser tests: a page with
// the given viewport height, the page errors it collects, and fail().
import { chromium } from 'playwright-core';

export const fail = (m) => { console.error('FAIL: ' + m); process.exit(1); };

export async function open(height) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage({ viewport: { width: 1240, height } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  return { browser, page, errors };
}

// the frame <g> whose title starts with NAME (
export const frame = (page, name) =>
  page.locator('#frames > g', { has: page.locator('title', { hasText: new RegExp('^' + name + ' \\(') }) }).first();
