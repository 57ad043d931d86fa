// The web UI against a server that requires an API key (`sf3d serve --api-key`), in headless Chromium: the key
// form appears, requests without the key or with a wrong one fail in words, a saved key lets the page list the
// gallery, generate, draw, download and show thumbnails (the WebSocket and `<img>`/download URLs carry it as
// `?token=`), the key survives a reload, and forgetting it locks the page again.
//
//   SF3D_URL=http://127.0.0.1:9299 SF3D_API_KEY=secret SF3D_TEST_IMAGE=cube.png node tests/browser/ui-auth.mjs
//
// Environment:
//   SF3D_URL            base URL of a running `sf3d serve --api-key …` (required)
//   SF3D_API_KEY        that server's key (required)
//   SF3D_TEST_IMAGE     an RGBA PNG of an object on a transparent background (required)
//   SF3D_ARTIFACTS      folder for screenshots and the downloaded GLB (default tests/artifacts)
//   SF3D_JOB_TIMEOUT_MS how long one job may take (default 120000)
//   CHROMIUM            browser binary (default /usr/bin/chromium)
//
// Prints one line per step; exits 0 only when every step passed. Console errors fail the run, except the
// browser's own "status of 401" lines for the requests made while no right key is saved.

import fs from 'node:fs';
import path from 'node:path';
import { fail0 as fail0In, openBrowser, steps } from './harness.mjs';

const BASE = (process.env.SF3D_URL || '').replace(/\/$/, '');
const KEY = process.env.SF3D_API_KEY || '';
const IMAGE = process.env.SF3D_TEST_IMAGE;
const ARTIFACTS = path.resolve(process.env.SF3D_ARTIFACTS || 'tests/artifacts');
const JOB_TIMEOUT = Number(process.env.SF3D_JOB_TIMEOUT_MS || 120000);

const fail0 = (msg) => fail0In('ui-auth.mjs', msg);
if (!BASE) fail0('SF3D_URL is not set');
if (!KEY) fail0('SF3D_API_KEY is not set');
if (!IMAGE || !fs.existsSync(IMAGE)) fail0(`SF3D_TEST_IMAGE is not a file: ${IMAGE}`);
fs.mkdirSync(ARTIFACTS, { recursive: true });

// While no right key is saved, the browser logs each refused request itself; that is the expected answer.
let keyless = true;
const { browser, page, problems } = await openBrowser({
  expected: (text) => keyless && /status of 401/.test(text),
  acceptDownloads: true,
});
// Every request the page makes, to check what carried the key.
const requests = [];
page.on('request', (r) => requests.push({ url: r.url(), auth: r.headers().authorization || '' }));
/** The gallery/mesh API requests among `requests` that carried the key neither as a header nor as `?token=`. */
const withoutKey = () => requests.filter((r) => new URL(r.url).pathname.startsWith('/api/meshes')
  && !r.auth.includes(KEY) && !r.url.includes(`token=${encodeURIComponent(KEY)}`));

const { step, finish } = steps({ script: 'ui-auth.mjs', page, problems, artifacts: ARTIFACTS, failurePrefix: 'auth-' });
const text = async (sel) => (await page.locator(sel).first().innerText()).trim();
const connected = () => page.locator('[data-testid="conn-state"][data-state="connected"]').waitFor();

async function saveKey(key) {
  await page.locator('[data-testid="api-key-input"]').fill(key);
  await page.locator('[data-testid="api-key-save"]').click();
  await page.locator('[data-testid="api-key-forget"]').waitFor();
}

async function forgetKey() {
  await page.locator('[data-testid="api-key-forget"]').click();
  await page.locator('[data-testid="api-key-input"]').waitFor();
}

await step('open the page: the server asks for a key and the gallery says why it is empty', async () => {
  await page.goto(BASE + '/');
  await connected();
  await page.locator('[data-testid="api-key-form"]').waitFor();
  await page.locator('[data-testid="api-key-input"]').waitFor();
  await page.locator('[data-testid="gallery-error"]').waitFor();
  const t = await text('[data-testid="gallery-error"]');
  if (!/API key/i.test(t)) throw new Error(`gallery error: ${t}`);
  return t.replace(/\n+/g, ' / ');
});

await step('generating without a key fails in words', async () => {
  await page.setInputFiles('[data-testid="file-input"]', IMAGE);
  await page.locator('[data-testid="input-preview"]').waitFor();
  await page.locator('[data-testid="generate"]:not([disabled])').click();
  await page.locator('[data-testid="progress"][data-phase="failed"]').waitFor();
  const t = await text('[data-testid="job-error"]');
  if (!/key/i.test(t)) throw new Error(`job error: ${t}`);
  return t.replace(/\n+/g, ' / ');
});

await step('a wrong key is refused the same way and can be forgotten', async () => {
  await saveKey(`${KEY}-wrong`);
  await connected();
  await page.locator('[data-testid="gallery-error"]').waitFor();
  const t = await text('[data-testid="gallery-error"]');
  if (!/API key/i.test(t)) throw new Error(`gallery error: ${t}`);
  await forgetKey();
});

await step('the right key opens the gallery and the job queue', async () => {
  requests.length = 0;
  await saveKey(KEY);
  keyless = false;
  await connected();
  await page.locator('[data-testid="gallery-empty"], [data-testid="gallery-item"]').first().waitFor();
  if (await page.locator('[data-testid="gallery-error"]').count()) throw new Error(await text('[data-testid="gallery-error"]'));
  const stored = await page.evaluate(() => localStorage.getItem('sf3d.api_key'));
  if (stored !== KEY) throw new Error(`localStorage holds ${JSON.stringify(stored)}`);
});

let meshId = null;
await step('generate with the key: every stage, the viewer draws the mesh', async () => {
  await page.locator('[data-testid="generate"]:not([disabled])').click();
  await page.locator('[data-testid="progress"][data-phase="succeeded"], [data-testid="progress"][data-phase="failed"]')
    .waitFor({ timeout: JOB_TIMEOUT });
  const phase = await page.locator('[data-testid="progress"]').getAttribute('data-phase');
  if (phase !== 'succeeded') throw new Error(`job ${phase}: ${await text('[data-testid="job-error"]')}`);
  await page.waitForFunction(() => window.__sf3dViewer && window.__sf3dViewer.ready === true, null, { timeout: 60000 });
  const hook = await page.evaluate(() => window.__sf3dViewer);
  if (!(hook.vertices > 0 && hook.faces > 0)) throw new Error(`empty mesh: ${JSON.stringify(hook)}`);
  meshId = hook.mesh_id;
  return `mesh ${meshId}: ${hook.vertices} vertices, ${hook.faces} faces`;
});

await step('the download link carries the key and yields the GLB', async () => {
  const href = await page.locator('[data-testid="viewer-download"]').getAttribute('href');
  if (!href.includes(`token=${encodeURIComponent(KEY)}`)) throw new Error(`download link without the key: ${href}`);
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.locator('[data-testid="viewer-download"]').click(),
  ]);
  const file = path.join(ARTIFACTS, 'auth-download.glb');
  await download.saveAs(file);
  const head = fs.readFileSync(file).subarray(0, 4).toString('latin1');
  if (head !== 'glTF') throw new Error(`magic ${JSON.stringify(head)}`);
  // Without the key, the same URL is refused.
  const bare = new URL(href, BASE + '/');
  bare.searchParams.delete('token');
  const res = await fetch(bare);
  if (res.status !== 401) throw new Error(`${bare.pathname} without the key answers ${res.status}`);
  return `${download.suggestedFilename()} (${fs.statSync(file).size} bytes); 401 without the key`;
});

await step('the gallery thumbnail loads through the key', async () => {
  const img = page.locator(`[data-testid="gallery-item"][data-mesh-id="${meshId}"] img`).first();
  await img.waitFor();
  await page.waitForFunction((id) => {
    const i = document.querySelector(`[data-testid="gallery-item"][data-mesh-id="${id}"] img`);
    return i && i.complete && i.naturalWidth > 0;
  }, meshId);
  const apiCalls = requests.filter((r) => new URL(r.url).pathname.startsWith('/api/meshes'));
  const bare = withoutKey();
  if (bare.length) throw new Error(`requests without the key: ${bare.map((r) => r.url).join(', ')}`);
  return `${apiCalls.length} gallery/mesh requests carried the key`;
});

await step('the key survives a reload', async () => {
  requests.length = 0;
  await page.reload();
  await connected();
  await page.locator('[data-testid="api-key-forget"]').waitFor();
  await page.locator(`[data-testid="gallery-item"][data-mesh-id="${meshId}"]`).waitFor();
  const bare = withoutKey();
  if (bare.length) throw new Error(`requests without the key: ${bare.map((r) => r.url).join(', ')}`);
  await page.screenshot({ path: path.join(ARTIFACTS, 'auth-unlocked.png'), fullPage: true });
});

await step('forgetting the key locks the page again', async () => {
  keyless = true;
  await forgetKey();
  const stored = await page.evaluate(() => localStorage.getItem('sf3d.api_key'));
  if (stored !== null) throw new Error(`localStorage still holds ${JSON.stringify(stored)}`);
  await page.reload();
  await connected();
  await page.locator('[data-testid="api-key-input"]').waitFor();
  await page.locator('[data-testid="gallery-error"]').waitFor();
  if (await page.locator('[data-testid="gallery-item"]').count()) throw new Error('the gallery is listed without a key');
  await page.screenshot({ path: path.join(ARTIFACTS, 'auth-locked.png'), fullPage: true });
});

await finish(browser);
