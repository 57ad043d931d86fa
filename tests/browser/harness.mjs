// What every browser script shares: Debian's headless Chromium with the flags that work here, the console
// watch (any console or page error fails the step it happened in, unless the script says it is expected), and
// the step runner that prints one line per step, screenshots a failure and sets the exit code.

import path from 'node:path';
import { chromium } from 'playwright-core';

/** Prints a set-up error (bad environment) and exits 2, before any browser is started. */
export function fail0(script, msg) {
  console.error(`${script}: ${msg}`);
  process.exit(2);
}

/**
 * Starts Chromium (`CHROMIUM`, default /usr/bin/chromium) with one 1366×900 page.
 * `expected(text)` says which console errors are expected answers rather than problems.
 * Returns `{ browser, context, page, problems }`; `problems` collects the unexpected errors.
 */
export async function openBrowser({ expected = () => false, acceptDownloads = false } = {}) {
  const problems = [];
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--enable-unsafe-swiftshader'],
  });
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 }, acceptDownloads });
  const page = await context.newPage();
  page.setDefaultTimeout(30000);
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    if (expected(m.text())) return;
    problems.push(`console error: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  return { browser, context, page, problems };
}

/**
 * The step runner of `script` (its name in the output). After the first failure the remaining steps are
 * skipped; a step given a `skipWhy` is skipped and says why. A failure's screenshot goes to
 * `ARTIFACTS/<failurePrefix>failure-N.png`.
 */
export function steps({ script, page, problems, artifacts, failurePrefix = '' }) {
  let failed = false;
  let skipped = 0;
  let n = 0;
  async function step(name, fn, skipWhy = null) {
    if (failed || skipWhy) {
      console.log(`skip ${++n} - ${name}${skipWhy ? ` (${skipWhy})` : ''}`);
      skipped += skipWhy ? 1 : 0;
      return;
    }
    const t0 = Date.now();
    try {
      const note = await fn();
      if (problems.length) throw new Error(problems.splice(0).join('\n  '));
      console.log(`ok   ${++n} - ${name} (${Date.now() - t0} ms)${note ? `: ${note}` : ''}`);
    } catch (e) {
      failed = true;
      console.log(`FAIL ${++n} - ${name} (${Date.now() - t0} ms)\n  ${e && e.message ? e.message : e}`);
      const shot = path.join(artifacts, `${failurePrefix}failure-${n}.png`);
      await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
    }
  }
  /** Closes the browser, reports errors left after the last step, and exits 0 only when every step passed. */
  async function finish(browser) {
    await browser.close();
    if (problems.length) {
      console.log(`FAIL - errors after the last step:\n  ${problems.join('\n  ')}`);
      failed = true;
    }
    console.log(failed ? `${script}: FAILED` : `${script}: all steps passed${skipped ? ` (${skipped} skipped)` : ''}`);
    process.exit(failed ? 1 : 0);
  }
  return { step, finish };
}
