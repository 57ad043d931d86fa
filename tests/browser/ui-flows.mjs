// The web UI's less common paths, driven in headless Chromium against the protocol mock
// (tests/browser/mock-server.mjs, started and stopped by this script): preview-then-final, tweak and
// regenerate with a parent link, the linked-camera comparison, parameter validation and reset, queue position
// and cancel, a failed job's error and hint, re-attaching to a running job after a reload, and reconnecting
// after the server went away. Needs only a built dist/ (trunk build); no engine.
//
//   node tests/browser/ui-flows.mjs            # SF3D_ARTIFACTS for screenshots (default tests/artifacts)
//
// Prints one line per step; exits 0 only when every step passed. Console errors fail the run, except the
// failed connection attempts while the server is deliberately down.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const ARTIFACTS = path.resolve(process.env.SF3D_ARTIFACTS || path.join(ROOT, 'tests', 'artifacts'));
const PORT = Number(process.env.SF3D_MOCK_PORT || 18000 + Math.floor(Math.random() * 2000));
const BASE = `http://127.0.0.1:${PORT}`;
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAACAAAAAgCAYAAABzenr0AAAAmElEQVR42mNgGAUDDBjJ0XQnwOY/NnGVDUcYaeYAXJbiAsQ6hokWlpOih5HaFpMaGky0tpyQWUwDnQuYaO17QmYykmq5j8YCvBZtuZFAUnoYnFEwYA6gRdwTiuLRKBh1wOByADn1OaUV02gUMNKrMsIVxUzUatuR2ygZvGmAmqGAzyyiLCE3TRDjCSZqGUSungHvmIyCAQcAptQ/LiwhSj0AAAAASUVORK5CYII=', 'base64');

fs.mkdirSync(ARTIFACTS, { recursive: true });
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sf3d-ui-'));
const image = (name) => { const p = path.join(tmp, name); fs.writeFileSync(p, PNG); return p; };

let mock = null;
async function startMock() {
  mock = spawn(process.execPath, [path.join(HERE, 'mock-server.mjs'), '--port', String(PORT), '--dist', path.join(ROOT, 'dist'), '--stage-ms', '120', '--seed', '14'],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve, reject) => {
    mock.stdout.once('data', resolve);
    mock.once('exit', (c) => reject(new Error(`mock exited with ${c}`)));
  });
}
async function stopMock() {
  if (!mock) return;
  const m = mock; mock = null;
  await new Promise((r) => { m.once('exit', r); m.kill(); });
}

const problems = [];
let serverDown = false;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--enable-unsafe-swiftshader'],
});
const page = await browser.newPage({ viewport: { width: 1366, height: 900 } });
page.setDefaultTimeout(30000);
page.on('console', (m) => {
  if (m.type() !== 'error') return;
  if (serverDown && /ERR_CONNECTION_REFUSED|WebSocket connection to .* failed|Failed to load resource/.test(m.text())) return;
  problems.push(`console error: ${m.text()}`);
});
page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));

let failed = false;
let n = 0;
async function step(name, fn) {
  if (failed) { console.log(`skip ${++n} - ${name}`); return; }
  const t0 = Date.now();
  try {
    const note = await fn();
    if (problems.length) throw new Error(problems.splice(0).join('\n  '));
    console.log(`ok   ${++n} - ${name} (${Date.now() - t0} ms)${note ? `: ${note}` : ''}`);
  } catch (e) {
    failed = true;
    console.log(`FAIL ${++n} - ${name} (${Date.now() - t0} ms)\n  ${e && e.message ? e.message : e}`);
    await page.screenshot({ path: path.join(ARTIFACTS, `flows-failure-${n}.png`), fullPage: true }).catch(() => {});
  }
}

const $ = (id) => page.locator(`[data-testid="${id}"]`);
const phase = () => $('progress').getAttribute('data-phase');
const waitPhase = (...phases) => page.locator(phases.map((p) => `[data-testid="progress"][data-phase="${p}"]`).join(', ')).waitFor({ timeout: 60000 });
const connected = () => page.locator('[data-testid="conn-state"][data-state="connected"]').waitFor({ timeout: 30000 });

async function canvasSignature(testid) {
  return page.evaluate((sel) => {
    const c = document.querySelector(sel);
    const off = document.createElement('canvas');
    off.width = 64; off.height = 64;
    const ctx = off.getContext('2d');
    ctx.drawImage(c, 0, 0, 64, 64);
    return Array.from(ctx.getImageData(0, 0, 64, 64).data).join(',');
  }, `[data-testid="${testid}"]`);
}

async function generate(file) {
  await page.setInputFiles('[data-testid="file-input"]', file);
  await $('input-preview').waitFor();
  await page.locator('[data-testid="generate"]:not([disabled])').click();
}

await startMock();

await step('open the page', async () => {
  await page.goto(BASE + '/');
  await connected();
});

await step('the gallery pages with next_cursor (14 seeded entries, 12 per page)', async () => {
  await page.locator('[data-testid="gallery-item"]').first().waitFor();
  const first = await page.locator('[data-testid="gallery-item"]').count();
  await $('gallery-more').click();
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="gallery-item"]').length === 14);
  await $('gallery-more').waitFor({ state: 'detached' });
  const names = await page.$$eval('[data-testid="gallery-item"] .mesh-title', (h) => h.map((e) => e.textContent.trim()));
  if (names[0] !== 'seed-13.png' || names[13] !== 'seed-00.png') throw new Error(`order: ${names.join(', ')}`);
  return `${first} then ${names.length}`;
});

await step('validation: an out-of-range vertex count is refused next to the field, reset restores defaults', async () => {
  await page.setInputFiles('[data-testid="file-input"]', image('cube.png'));
  await $('param-vertex_count').fill('50');
  await $('generate').click();
  await $('error-vertex_count').waitFor({ state: 'visible' });
  const msg = await $('error-vertex_count').innerText();
  if (await phase() !== 'idle') throw new Error('a job started with invalid parameters');
  await $('reset-params').click();
  await $('error-vertex_count').waitFor({ state: 'hidden' });
  const v = await $('param-vertex_count').inputValue();
  if (v !== '-1') throw new Error(`vertex count after reset: ${v}`);
  return msg;
});

await step('paste and drag-and-drop pick an image too', async () => {
  const b64 = PNG.toString('base64');
  for (const [how, name] of [['paste', 'pasted.png'], ['drop', 'dropped.png']]) {
    await page.evaluate(({ how, name, b64 }) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], name, { type: 'image/png' }));
      if (how === 'paste') window.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true }));
      else document.querySelector('[data-testid="dropzone"]').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    }, { how, name, b64 });
    await page.locator('figcaption', { hasText: name }).waitFor();
  }
});

await step('preview first, then the final mesh replaces it', async () => {
  // Log every state of the viewer's test hook (the preview may be superseded before it is drawn when the final
  // asset follows quickly: software WebGL needs seconds for the first environment map).
  await page.evaluate(() => {
    let cur = window.__sf3dViewer;
    window.__hookLog = [];
    Object.defineProperty(window, '__sf3dViewer', { configurable: true, get: () => cur, set: (v) => { cur = v; window.__hookLog.push(v); } });
  });
  await $('param-preview').check();
  await generate(image('cube.png'));
  await $('preview-badge').waitFor({ timeout: 30000 });
  const previewId = await page.waitForFunction(() => window.__hookLog[0]?.mesh_id).then((h) => h.jsonValue());
  await waitPhase('succeeded');
  await $('preview-badge').waitFor({ state: 'detached' });
  const finalId = await page.waitForFunction((prev) => window.__sf3dViewer?.ready && window.__sf3dViewer.mesh_id !== prev && window.__sf3dViewer.mesh_id, previewId).then((h) => h.jsonValue());
  const newest = await page.locator('[data-testid="gallery-item"]').first().getAttribute('data-mesh-id');
  if (newest !== finalId) throw new Error(`viewer shows ${finalId}, newest gallery entry is ${newest}`);
  const drawn = await page.evaluate((id) => window.__hookLog.some((h) => h.ready && h.mesh_id === id), previewId);
  await $('param-preview').uncheck();
  return `preview ${previewId} (${drawn ? 'drawn' : 'superseded before drawn'}) → final ${finalId}`;
});

let parentId = null;
await step('tweak: parameters reload, regenerate skips the network (cached stages), the new entry links its parent', async () => {
  const card = page.locator('[data-testid="gallery-item"]').first();
  await card.waitFor();
  parentId = await card.getAttribute('data-mesh-id');
  await card.locator('[data-testid="gallery-tweak"]').click();
  await $('tweak-banner').waitFor();
  await $('param-remesh').selectOption('triangle');
  const label = await $('generate').innerText();
  if (!/Regenerate/.test(label)) throw new Error(`start button says ${label}`);
  await $('generate').click();
  await waitPhase('succeeded', 'failed');
  if (await phase() !== 'succeeded') throw new Error(await $('job-error').innerText());
  const cached = await page.$$eval('[data-testid="stage-list"] > li[data-state="cached"]', (l) => l.length);
  if (cached === 0) throw new Error('no stage reported cached');
  const child = page.locator('[data-testid="gallery-item"]').first();
  await child.locator('[data-testid="gallery-parent"]').waitFor();
  if (await child.getAttribute('data-mesh-id') === parentId) throw new Error('newest entry is still the parent');
  return `${cached} stages cached`;
});

await step('compare with the parent: two viewers draw, their cameras move together', async () => {
  await page.locator('[data-testid="gallery-item"]').first().locator('[data-testid="gallery-compare-parent"]').click();
  await $('compare').waitFor();
  await page.locator('[data-testid="compare-a"][data-status="ready"]').waitFor({ timeout: 60000 });
  await page.locator('[data-testid="compare-b"][data-status="ready"]').waitFor({ timeout: 60000 });
  await $('compare-a-canvas').scrollIntoViewIfNeeded();
  const before = await canvasSignature('compare-b-canvas');
  const box = await $('compare-a-canvas').boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width / 2 + 120, box.y + box.height / 2 + 30, { steps: 8 });
  await page.mouse.up();
  const after = await canvasSignature('compare-b-canvas');
  if (before === after) throw new Error('orbiting viewer A did not move viewer B');
  await page.screenshot({ path: path.join(ARTIFACTS, 'flows-compare.png'), fullPage: true });
  await $('compare-close').click();
  await $('compare').waitFor({ state: 'detached' });
});

await step('a failing job shows the error in words with what to do', async () => {
  await $('tweak-clear').click().catch(() => {});
  await generate(image('fail.png'));
  await waitPhase('failed');
  const t = await $('job-error').innerText();
  if (!/no surface/i.test(t) || !/try another picture/i.test(t)) throw new Error(`error text: ${t}`);
  return t.replace(/\n+/g, ' / ');
});

await step('queue position while waiting, then cancel', async () => {
  await generate(image('slow.png'));
  await $('queue-position').waitFor();
  const pos = await $('queue-position').innerText();
  await page.locator('[data-testid="cancel"]:not([disabled])').click();
  await waitPhase('cancelled');
  return pos;
});

await step('a reload re-attaches to the running job (job id in sessionStorage)', async () => {
  await generate(image('slow.png'));
  await page.waitForFunction(() => sessionStorage.getItem('sf3d.job_id'));
  await page.reload();
  await connected();
  await waitPhase('queued', 'running', 'succeeded');
  await waitPhase('succeeded');
  const left = await page.evaluate(() => sessionStorage.getItem('sf3d.job_id'));
  if (left) throw new Error(`job id still in the session: ${left}`);
  const done = await page.$$eval('[data-testid="stage-list"] > li', (l) => l.filter((li) => li.dataset.state !== 'pending').length);
  return `${done}/12 stages shown after re-attaching`;
});

await step('the socket reconnects after the server went away, and the lost job is reported', async () => {
  await generate(image('slow.png'));
  await page.waitForFunction(() => sessionStorage.getItem('sf3d.job_id'));
  serverDown = true;
  await stopMock();
  await page.locator('[data-testid="conn-state"][data-state="retrying"], [data-testid="conn-state"][data-state="connecting"]').first().waitFor();
  await startMock();
  await connected();
  serverDown = false;
  // The mock forgot its jobs: the re-subscription is answered with not_found.
  await waitPhase('failed');
  const t = await $('job-error').innerText();
  return t.split('\n')[0];
});

await browser.close();
await stopMock();
fs.rmSync(tmp, { recursive: true, force: true });
console.log(failed ? 'ui-flows.mjs: FAILED' : 'ui-flows.mjs: all steps passed');
process.exit(failed ? 1 : 0);
