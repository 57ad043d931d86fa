// Browser test of the SF3D Studio web UI: headless Debian Chromium driven by playwright-core.
//
//   SF3D_URL=http://127.0.0.1:9299 SF3D_ARTIFACTS=tests/artifacts SF3D_TEST_IMAGE=cube.png \
//     node tests/browser/ui.mjs
//
// Environment:
//   SF3D_URL            base URL of a running `sf3d serve` (required)
//   SF3D_ARTIFACTS      folder for screenshots and the downloaded GLB (default tests/artifacts)
//   SF3D_TEST_IMAGE     an RGBA PNG to upload (required unless SF3D_STATIC_ONLY=1)
//   SF3D_EXPECT_TEST_MODEL  "1" (default): the test-model warning must show; "0": it must not
//   SF3D_JOB_TIMEOUT_MS how long a generation may take (default 600000)
//   SF3D_STATIC_ONLY    "1": the page is served without the API (e.g. `python3 -m http.server -d dist`);
//                       only checks that it loads and shows a readable "server unreachable" state
//   CHROMIUM            browser binary (default /usr/bin/chromium)
//
// Prints one line per step; exits 0 only when every step passed. Any console error or uncaught page error
// fails the run (in static mode, the failed API/WebSocket requests themselves are expected and allowed).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fail0 as fail0In, openBrowser, steps } from './harness.mjs';

const BASE = (process.env.SF3D_URL || '').replace(/\/$/, '');
const ARTIFACTS = path.resolve(process.env.SF3D_ARTIFACTS || 'tests/artifacts');
const IMAGE = process.env.SF3D_TEST_IMAGE;
const STATIC_ONLY = process.env.SF3D_STATIC_ONLY === '1';
const EXPECT_TEST_MODEL = (process.env.SF3D_EXPECT_TEST_MODEL || '1') !== '0';
const JOB_TIMEOUT = Number(process.env.SF3D_JOB_TIMEOUT_MS || 600000);
const STEP_TIMEOUT = 30000;
const TERMINAL = ['done', 'cached', 'skipped'];
// The viewer's clear colour (js/viewer.js CLEAR_COLOR = 0x1b1e24).
const CLEAR = [0x1b, 0x1e, 0x24];

if (!BASE) fail0('SF3D_URL is not set');
if (!STATIC_ONLY && (!IMAGE || !fs.existsSync(IMAGE))) fail0(`SF3D_TEST_IMAGE is not a file: ${IMAGE}`);
fs.mkdirSync(ARTIFACTS, { recursive: true });

function fail0(msg) {
  fail0In('ui.mjs', msg);
}

const allowed = STATIC_ONLY
  ? [/Failed to load resource/i, /WebSocket connection to .* failed/i]
  : [];
const { browser, page, problems } = await openBrowser({
  expected: (text) => allowed.some((re) => re.test(text)),
  acceptDownloads: true,
});
page.setDefaultTimeout(STEP_TIMEOUT);
const { step, finish } = steps({ script: 'ui.mjs', page, problems, artifacts: ARTIFACTS });

const text = async (sel) => (await page.locator(sel).first().innerText()).trim();

/** Counts canvas pixels that differ from the clear colour (needs preserveDrawingBuffer). */
async function drawnPixels(selector) {
  return page.evaluate(({ selector, clear }) => {
    const c = document.querySelector(selector);
    if (!c || !c.width || !c.height) return { total: 0, drawn: 0 };
    const off = document.createElement('canvas');
    off.width = c.width;
    off.height = c.height;
    const ctx = off.getContext('2d');
    ctx.drawImage(c, 0, 0);
    const d = ctx.getImageData(0, 0, off.width, off.height).data;
    let drawn = 0;
    for (let i = 0; i < d.length; i += 4) {
      if (Math.abs(d[i] - clear[0]) + Math.abs(d[i + 1] - clear[1]) + Math.abs(d[i + 2] - clear[2]) > 12) drawn++;
    }
    return { total: d.length / 4, drawn };
  }, { selector, clear: CLEAR });
}

async function waitConnected() {
  await page.locator('[data-testid="conn-state"][data-state="connected"]').waitFor();
}

if (STATIC_ONLY) {
  await step('open the page without a server behind it', async () => {
    await page.goto(BASE + '/');
    await page.locator('[data-testid="health"]').waitFor();
  });
  await step('shows a readable "server unreachable" state', async () => {
    await page.locator('[data-testid="server-unreachable"]').waitFor();
    const t = await text('[data-testid="server-unreachable"]');
    if (!/unreachable/i.test(t)) throw new Error(`unexpected text: ${t}`);
    await page.locator('[data-testid="gallery-error"]').waitFor().catch(() => {});
    return t.split('\n')[0];
  });
  await step('the stage list and parameter panel are drawn', async () => {
    const rows = await page.locator('[data-testid="stage-list"] > li').count();
    if (rows !== 12) throw new Error(`${rows} stage rows, expected 12`);
    const res = await page.locator('[data-testid="param-texture_resolution"]').inputValue();
    if (res !== '1024') throw new Error(`texture resolution default ${res}`);
    if (!(await page.locator('[data-testid="generate"]').isDisabled())) throw new Error('start is enabled without a server');
  });
  await step('a non-image file is refused in words', async () => {
    const bad = path.join(os.tmpdir(), 'not-an-image.png');
    fs.writeFileSync(bad, 'this is a text file renamed to .png\n');
    await page.setInputFiles('[data-testid="file-input"]', bad);
    await page.locator('[data-testid="upload-error"]').waitFor();
    return await text('[data-testid="upload-error"]');
  });
  await step('screenshot (desktop and phone width)', async () => {
    await page.screenshot({ path: path.join(ARTIFACTS, 'static-desktop.png'), fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: path.join(ARTIFACTS, 'static-phone.png'), fullPage: true });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    if (overflow > 1) throw new Error(`the page is ${overflow}px wider than a phone screen`);
  });
} else {
  let meshId = null;

  await step('open the page (no console errors)', async () => {
    await page.goto(BASE + '/');
    await waitConnected();
  });

  await step('health banner shows the server and the test-model state', async () => {
    await page.locator('[data-testid="health-device"]').waitFor();
    const warning = page.locator('[data-testid="test-model-warning"]');
    if (EXPECT_TEST_MODEL) {
      await warning.waitFor();
    } else if (await warning.count()) {
      throw new Error('test-model warning shown for a real model');
    }
    return `${await text('[data-testid="health-device"]')} / ${await text('[data-testid="health-model"]')}`;
  });

  await step('upload the image with the file input', async () => {
    await page.setInputFiles('[data-testid="file-input"]', IMAGE);
    await page.locator('[data-testid="input-preview"]').waitFor();
    if (await page.locator('[data-testid="upload-error"]').count()) {
      throw new Error(await text('[data-testid="upload-error"]'));
    }
  });

  await step('start the job', async () => {
    await page.locator('[data-testid="generate"]:not([disabled])').click();
    await page.locator('[data-testid="progress"]:not([data-phase="idle"])').waitFor();
  });

  await step('every stage reaches a terminal state', async () => {
    await page.locator('[data-testid="progress"][data-phase="succeeded"], [data-testid="progress"][data-phase="failed"], [data-testid="progress"][data-phase="cancelled"]')
      .waitFor({ timeout: JOB_TIMEOUT });
    const phase = await page.locator('[data-testid="progress"]').getAttribute('data-phase');
    if (phase !== 'succeeded') {
      const err = (await page.locator('[data-testid="job-error"]').count()) ? await text('[data-testid="job-error"]') : '';
      throw new Error(`job ${phase}: ${err}`);
    }
    const rows = await page.$$eval('[data-testid="stage-list"] > li', (lis) =>
      lis.map((li) => [li.dataset.testid, li.dataset.state]));
    if (rows.length !== 12) throw new Error(`${rows.length} stage rows, expected 12`);
    const open = rows.filter(([, s]) => !TERMINAL.includes(s));
    if (open.length) throw new Error(`stages not terminal: ${open.map((r) => r.join('=')).join(', ')}`);
    return rows.map(([id, s]) => `${id.replace('stage-', '')}=${s}`).join(' ');
  });

  await step('the viewer draws the mesh', async () => {
    await page.waitForFunction(() => window.__sf3dViewer && window.__sf3dViewer.ready === true, null, { timeout: 60000 });
    const hook = await page.evaluate(() => window.__sf3dViewer);
    if (!(hook.vertices > 0 && hook.faces > 0)) throw new Error(`empty mesh: ${JSON.stringify(hook)}`);
    meshId = hook.mesh_id;
    const px = await drawnPixels('[data-testid="viewer-canvas"]');
    if (px.drawn < Math.max(100, px.total * 0.002)) throw new Error(`only ${px.drawn}/${px.total} pixels differ from the clear colour`);
    const preprocessed = page.locator('[data-testid="preprocessed-preview"]');
    await preprocessed.waitFor();
    await page.waitForFunction(() => {
      const img = document.querySelector('[data-testid="preprocessed-preview"]');
      return img && img.complete && img.naturalWidth > 0;
    });
    return `${hook.vertices} vertices, ${hook.faces} faces, ${px.drawn}/${px.total} pixels drawn, mesh ${meshId}`;
  });

  await step('viewer toggles keep drawing (wireframe, albedo only, reset)', async () => {
    for (const id of ['viewer-wireframe', 'viewer-albedo']) {
      await page.locator(`[data-testid="${id}"]`).click();
      if ((await page.locator(`[data-testid="${id}"]`).getAttribute('aria-pressed')) !== 'true') throw new Error(`${id} not pressed`);
      const px = await drawnPixels('[data-testid="viewer-canvas"]');
      if (px.drawn === 0) throw new Error(`nothing drawn with ${id}`);
      await page.locator(`[data-testid="${id}"]`).click();
    }
    await page.locator('[data-testid="viewer-reset"]').click();
    const counts = await text('[data-testid="viewer-counts"]');
    if (!/vertices/.test(counts)) throw new Error(`counts: ${counts}`);
    return counts;
  });

  await step('download the GLB', async () => {
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.locator('[data-testid="viewer-download"]').click(),
    ]);
    const file = path.join(ARTIFACTS, 'ui-download.glb');
    await download.saveAs(file);
    const head = fs.readFileSync(file).subarray(0, 4).toString('latin1');
    if (head !== 'glTF') throw new Error(`magic ${JSON.stringify(head)}`);
    return `${download.suggestedFilename()} (${fs.statSync(file).size} bytes)`;
  });

  await step('screenshot the main view', async () => {
    await page.screenshot({ path: path.join(ARTIFACTS, 'ui-main.png'), fullPage: true });
  });

  await step('reload and find the entry in the gallery', async () => {
    await page.reload();
    await waitConnected();
    await page.locator(`[data-testid="gallery-item"][data-mesh-id="${meshId}"]`).waitFor();
  });

  await step('screenshot the gallery', async () => {
    await page.locator('[data-testid="gallery"]').screenshot({ path: path.join(ARTIFACTS, 'ui-gallery.png') });
  });

  await step('works at phone width (no horizontal scrolling)', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    await page.screenshot({ path: path.join(ARTIFACTS, 'ui-phone.png'), fullPage: true });
    await page.setViewportSize({ width: 1366, height: 900 });
    if (overflow > 1) throw new Error(`the page is ${overflow}px wider than a phone screen`);
  });

  await step('delete the entry and see it gone', async () => {
    const card = page.locator(`[data-testid="gallery-item"][data-mesh-id="${meshId}"]`);
    await card.locator('[data-testid="gallery-delete"]').click();
    await card.locator('[data-testid="gallery-delete-confirm"]').click();
    await card.waitFor({ state: 'detached' });
    const res = await fetch(`${BASE}/api/meshes/${meshId}`);
    if (res.status !== 404) throw new Error(`GET /api/meshes/${meshId} answers ${res.status} after delete`);
  });

  await step('a bad file (text renamed .png) gives a readable error', async () => {
    const bad = path.join(os.tmpdir(), 'not-an-image.png');
    fs.writeFileSync(bad, 'this is a text file renamed to .png\n');
    await page.setInputFiles('[data-testid="file-input"]', bad);
    await page.locator('[data-testid="upload-error"]').waitFor();
    const t = await text('[data-testid="upload-error"]');
    if (!/not a PNG, JPEG or WebP/i.test(t)) throw new Error(`unexpected error text: ${t}`);
    return t.replace(/\n+/g, ' / ');
  });
}

await finish(browser);
