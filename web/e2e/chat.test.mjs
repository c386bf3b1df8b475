// End-to-end test of the chat demo in headless Chromium (Debian's, driven by playwright-core):
// two pages connect to the native chat server through portnet compiled to wasm, one sends a
// line, both show it, the other answers. Saves a screenshot.
//
//   node web/e2e/chat.test.mjs http://127.0.0.1:PORT/ path/to/screenshot.png
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

const [url, screenshot] = process.argv.slice(2);
if (!url || !screenshot) {
  console.error('usage: node chat.test.mjs URL SCREENSHOT.png');
  process.exit(2);
}
const TIMEOUT = 20_000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--disable-quic', '--no-first-run'],
  timeout: 60_000,
});
let failed = false;
try {
  const open = async (name) => {
    const page = await browser.newPage({ viewport: { width: 760, height: 640 } });
    page.on('console', (m) => console.log(`[${name} console] ${m.text()}`));
    page.on('pageerror', (e) => console.log(`[${name} page error] ${e}`));
    await page.goto(url, { timeout: TIMEOUT });
    await page.locator('#state[data-state="connected"]').waitFor({ timeout: TIMEOUT });
    await page.fill('#name', name);
    return page;
  };
  const alice = await open('alice');
  const bob = await open('bob');
  const say = async (page, text) => {
    await page.fill('#text', text);
    await page.click('#send');
  };
  const expectLine = (page, line) =>
    page.locator('#messages li', { hasText: line }).first().waitFor({ timeout: TIMEOUT });

  await say(alice, 'hello from alice ✓');
  await expectLine(bob, 'alice: hello from alice ✓');
  await expectLine(alice, 'alice: hello from alice ✓');
  await say(bob, 'hi alice, bob here');
  await expectLine(alice, 'bob: hi alice, bob here');
  await expectLine(bob, 'bob: hi alice, bob here');
  const problem = await alice.textContent('#problem');
  if (problem) throw new Error(`the page reported a problem: ${problem}`);
  mkdirSync(dirname(screenshot), { recursive: true });
  await alice.screenshot({ path: screenshot, fullPage: true });
  console.log(`chat e2e: two browser clients chatted through the native server; screenshot ${screenshot}`);
} catch (error) {
  failed = true;
  console.error(`chat e2e: FAILED: ${error.stack || error}`);
  for (const page of browser.contexts().flatMap((c) => c.pages())) {
    try {
      console.error(`--- page ${page.url()}:\n${await page.locator('body').innerText()}`);
      mkdirSync(dirname(screenshot), { recursive: true });
      await page.screenshot({ path: screenshot.replace(/\.png$/, '-failed.png') });
    } catch {}
  }
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
