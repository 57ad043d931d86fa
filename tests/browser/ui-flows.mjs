// The web UI's less common paths, driven in headless Chromium against a real `sf3d serve` (the Rust test
// `browser::ui_flows_…` starts one with the built-in test model): gallery pages, parameter validation and
// reset, paste and drop, preview then final, tweak and regenerate with cached stages and a parent link, the
// linked-camera comparison, a failed job's error and hint, queue position and cancel, re-attaching to a running
// job after a reload, and reconnecting after the server was restarted.
//
//   SF3D_URL=http://127.0.0.1:9299 SF3D_TEST_IMAGE=cube.png node tests/browser/ui-flows.mjs
//
// Environment:
//   SF3D_URL             base URL of a running `sf3d serve` (required); its gallery is added to (seeded with 14
//                        entries through POST /api/generate); a fresh data folder is best
//   SF3D_TEST_IMAGE      an RGBA PNG of an object on a transparent background (required)
//   SF3D_ARTIFACTS       folder for screenshots (default tests/artifacts)
//   SF3D_SERVER_CONTROL  "stdio": the harness restarts the server on request (tests/browser.rs): the script
//                        prints `SF3D-CONTROL stop|start` and reads `SF3D-CONTROL ok …` back on stdin. Without
//                        it the reconnect step is skipped (and says so).
//   SF3D_JOB_TIMEOUT_MS  how long one job may take (default 120000)
//   CHROMIUM             browser binary (default /usr/bin/chromium)
//
// Timing assumptions (test model on a CPU): a job at texture 512 takes about a second, one at 2048 several
// seconds (the bake); the queue, reload and reconnect steps use 2048 jobs so they are still running when the
// page acts on them.
//
// Prints one line per step; exits 0 only when every step passed. Console errors fail the run, except the
// failed connection attempts while the server is deliberately down.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import zlib from 'node:zlib';
import { fail0 as fail0In, openBrowser, steps } from './harness.mjs';

const BASE = (process.env.SF3D_URL || '').replace(/\/$/, '');
const IMAGE = process.env.SF3D_TEST_IMAGE;
const ARTIFACTS = path.resolve(process.env.SF3D_ARTIFACTS || 'tests/artifacts');
const JOB_TIMEOUT = Number(process.env.SF3D_JOB_TIMEOUT_MS || 120000);
const CONTROLLED = process.env.SF3D_SERVER_CONTROL === 'stdio';
const CONTROL = 'SF3D-CONTROL ';
const SEEDS = 14;
const PAGE = 12; // frontend/src/app.rs GALLERY_PAGE
// The stages that depend only on the image: `cached` on a regenerate (docs/protocol.md, Stages).
const ENCODE_STAGES = ['decode', 'remove_background', 'prepare', 'encode_image', 'backbone', 'triplane', 'estimate_material'];

const fail0 = (msg) => fail0In('ui-flows.mjs', msg);
if (!BASE) fail0('SF3D_URL is not set');
if (!IMAGE || !fs.existsSync(IMAGE)) fail0(`SF3D_TEST_IMAGE is not a file: ${IMAGE}`);
fs.mkdirSync(ARTIFACTS, { recursive: true });
const IMAGE_BYTES = fs.readFileSync(IMAGE);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sf3d-ui-flows-'));
/** The test image under another name (the upload panel's caption tells the uploads apart). */
const image = (name, bytes = IMAGE_BYTES) => {
  const p = path.join(tmp, name);
  fs.writeFileSync(p, bytes);
  return p;
};

// ---- a PNG encoder (RGBA8), for an image the server refuses ---------------------------------------------

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function png(w, h, rgba) {
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr.set([8, 6, 0, 0, 0], 8); // 8 bit, RGBA
  const raw = Buffer.alloc(h * (1 + 4 * w));
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) raw.set(rgba(x, y), y * (1 + 4 * w) + 1 + 4 * x);
  }
  return Buffer.concat([Buffer.from('\x89PNG\r\n\x1a\n', 'latin1'), chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

// ---- the REST API and the harness ----------------------------------------------------------------------

async function api(route, init) {
  const res = await fetch(BASE + route, init);
  if (!res.ok) throw new Error(`${init?.method || 'GET'} ${route}: ${res.status} ${await res.text()}`);
  return res;
}
const getJson = async (route) => (await api(route)).json();

/** `POST /api/generate` (multipart); resolves with the new mesh id once the job is done. */
async function restGenerate(name, params = {}) {
  const form = new FormData();
  form.append('image', new Blob([IMAGE_BYTES], { type: 'image/png' }), name);
  for (const [k, v] of Object.entries(params)) form.append(k, String(v));
  const res = await api('/api/generate', { method: 'POST', body: form });
  const head = Buffer.from(await res.arrayBuffer()).subarray(0, 4).toString('latin1');
  if (head !== 'glTF') throw new Error(`POST /api/generate ${name}: not a GLB (${JSON.stringify(head)})`);
  return res.headers.get('x-mesh-id');
}

/** Every listed gallery entry, newest first. */
async function listAll() {
  const items = [];
  let cursor = null;
  do {
    const page = await getJson(`/api/meshes?limit=50${cursor ? `&cursor=${cursor}` : ''}`);
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return items;
}

async function waitQueue(pred, what) {
  const until = Date.now() + JOB_TIMEOUT;
  for (;;) {
    const { queue } = await getJson('/api/health');
    if (pred(queue)) return queue;
    if (Date.now() > until) throw new Error(`the server's queue never had ${what}: ${JSON.stringify(queue)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Asks the harness to `stop` or `start` the server (same port and data folder); resolves once it has. */
const control = CONTROLLED ? harness() : null;
function harness() {
  const answers = [];
  const waiting = [];
  readline.createInterface({ input: process.stdin }).on('line', (line) => {
    if (!line.startsWith(CONTROL)) return;
    const answer = line.slice(CONTROL.length);
    const w = waiting.shift();
    if (w) w(answer);
    else answers.push(answer);
  });
  return async (request) => {
    const answer = new Promise((resolve) => (answers.length ? resolve(answers.shift()) : waiting.push(resolve)));
    process.stdout.write(`${CONTROL}${request}\n`);
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer from the harness to ${request}`)), JOB_TIMEOUT);
    });
    const got = await Promise.race([answer, timeout]).finally(() => clearTimeout(timer));
    if (!got.startsWith('ok')) throw new Error(`the harness could not ${request} the server: ${got}`);
    return got;
  };
}

// ---- the browser ---------------------------------------------------------------------------------------

let serverDown = false;
const { browser, page, problems } = await openBrowser({
  expected: (text) => serverDown && /ERR_CONNECTION_REFUSED|WebSocket connection to .* failed|Failed to load resource/.test(text),
});
// Every value the progress panel's data-phase takes, in order (a fast job passes through phases quicker than
// a locator polls), and whether the preview badge was ever on screen.
await page.addInitScript(() => {
  window.__phases = [];
  window.__sawPreviewBadge = false;
  document.addEventListener('DOMContentLoaded', () => {
    new MutationObserver((records) => {
      const phase = records.filter((r) => r.attributeName === 'data-phase' && r.target.dataset.testid === 'progress');
      if (phase.length) {
        for (const r of phase.slice(1)) window.__phases.push(r.oldValue);
        window.__phases.push(phase[phase.length - 1].target.dataset.phase);
      }
      if (document.querySelector('[data-testid="preview-badge"]')) window.__sawPreviewBadge = true;
    }).observe(document.body, { subtree: true, childList: true, attributes: true, attributeOldValue: true, attributeFilter: ['data-phase'] });
  });
});

const { step, finish } = steps({ script: 'ui-flows.mjs', page, problems, artifacts: ARTIFACTS, failurePrefix: 'flows-' });

const $ = (id) => page.locator(`[data-testid="${id}"]`);
const phase = () => $('progress').getAttribute('data-phase');
const connected = () => page.locator('[data-testid="conn-state"][data-state="connected"]').waitFor({ timeout: 30000 });
const sessionJob = () => page.evaluate(() => sessionStorage.getItem('sf3d.job_id'));
const newestCard = () => page.locator('[data-testid="gallery-item"]').first();

/** How many phase changes were seen so far (a mark for `phaseSince`). */
const phaseMark = () => page.evaluate(() => window.__phases.length);
/** Waits until the progress panel took one of `phases` after `mark`; returns the phase. */
async function phaseSince(mark, phases, timeout = JOB_TIMEOUT) {
  const h = await page.waitForFunction(({ mark, phases }) => window.__phases.slice(mark).find((p) => phases.includes(p)),
    { mark, phases }, { timeout, polling: 50 });
  return h.jsonValue();
}
/** Waits for one of the terminal phases after `mark` and checks it is `want` (else shows the job error). */
async function expectOutcome(mark, want) {
  const got = await phaseSince(mark, ['succeeded', 'failed', 'cancelled']);
  if (got !== want) {
    const err = (await $('job-error').count()) ? (await $('job-error').innerText()).replace(/\n+/g, ' / ') : '';
    throw new Error(`the job ${got}, expected ${want}${err ? `: ${err}` : ''}`);
  }
}

/** Picks `file` with the file input and waits until the panel shows it. */
async function pick(file) {
  await page.setInputFiles('[data-testid="file-input"]', file);
  await page.locator('figcaption', { hasText: path.basename(file) }).waitFor();
  if (await $('upload-error').count()) throw new Error(await $('upload-error').innerText());
}
/** Clicks the start button; returns the phase mark taken just before. */
async function start() {
  const mark = await phaseMark();
  await page.locator('[data-testid="generate"]:not([disabled])').click();
  return mark;
}

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

// ---- the steps ------------------------------------------------------------------------------------------

await step(`seed the gallery through POST /api/generate (${SEEDS} entries, texture 512)`, async () => {
  const t0 = Date.now();
  for (let i = 0; i < SEEDS; i++) await restGenerate(`seed-${String(i).padStart(2, '0')}.png`, { texture_resolution: 512 });
  return `${((Date.now() - t0) / SEEDS).toFixed(0)} ms per entry`;
});

await step('open the page', async () => {
  await page.goto(BASE + '/');
  await connected();
});

await step(`the gallery pages with next_cursor (${PAGE} per page)`, async () => {
  const total = (await listAll()).length;
  await page.locator('[data-testid="gallery-item"]').first().waitFor();
  const first = await page.locator('[data-testid="gallery-item"]').count();
  if (first !== Math.min(PAGE, total)) throw new Error(`first page has ${first} entries of ${total}`);
  await $('gallery-more').click();
  const second = Math.min(2 * PAGE, total);
  await page.waitForFunction((k) => document.querySelectorAll('[data-testid="gallery-item"]').length === k, second);
  if (total <= 2 * PAGE) await $('gallery-more').waitFor({ state: 'detached' });
  const names = await page.$$eval('[data-testid="gallery-item"] .mesh-title', (h) => h.map((e) => e.textContent.trim()));
  const want = Array.from({ length: SEEDS }, (_, i) => `seed-${String(SEEDS - 1 - i).padStart(2, '0')}.png`);
  if (names.slice(0, SEEDS).join() !== want.join()) throw new Error(`order: ${names.join(', ')}`);
  return `${first} then ${names.length} of ${total}`;
});

await step('validation: an out-of-range vertex count is refused next to the field, reset restores defaults', async () => {
  await pick(image('product.png'));
  await $('param-vertex_count').fill('50');
  const mark = await phaseMark();
  await $('generate').click();
  await $('error-vertex_count').waitFor({ state: 'visible' });
  const msg = await $('error-vertex_count').innerText();
  if (await phase() !== 'idle' || (await phaseMark()) !== mark) throw new Error('a job started with invalid parameters');
  await $('reset-params').click();
  await $('error-vertex_count').waitFor({ state: 'hidden' });
  const v = await $('param-vertex_count').inputValue();
  if (v !== '-1') throw new Error(`vertex count after reset: ${v}`);
  return msg;
});

await step('paste and drag-and-drop pick an image too', async () => {
  const b64 = IMAGE_BYTES.toString('base64');
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
  await pick(image('preview.png'));
  const mark = await start();
  await expectOutcome(mark, 'succeeded');
  if (!(await page.evaluate(() => window.__sawPreviewBadge))) throw new Error('the preview badge never showed');
  await $('preview-badge').waitFor({ state: 'detached' });
  const previewId = await page.evaluate(() => window.__hookLog.find((h) => h.mesh_id)?.mesh_id);
  const finalId = await page.waitForFunction((prev) => window.__sf3dViewer?.ready && window.__sf3dViewer.mesh_id !== prev && window.__sf3dViewer.mesh_id, previewId).then((h) => h.jsonValue());
  // The server's view: the preview is a quick entry (reachable, not listed), the final one is the newest.
  const preview = await getJson(`/api/meshes/${previewId}`);
  const final = await getJson(`/api/meshes/${finalId}`);
  if (!preview.metadata.preview || preview.metadata.params.texture_resolution !== 512) throw new Error(`not a preview: ${JSON.stringify(preview.metadata.params)}`);
  if (final.metadata.preview) throw new Error('the final mesh is marked as a preview');
  await page.waitForFunction((id) => document.querySelector('[data-testid="gallery-item"]')?.dataset.meshId === id, finalId)
    .catch(async () => { throw new Error(`viewer shows ${finalId}, newest gallery entry is ${await newestCard().getAttribute('data-mesh-id')}`); });
  if (await page.locator(`[data-testid="gallery-item"][data-mesh-id="${previewId}"]`).count()) throw new Error('the preview is listed in the gallery');
  const drawn = await page.evaluate((id) => window.__hookLog.some((h) => h.ready && h.mesh_id === id), previewId);
  await $('param-preview').uncheck();
  return `preview ${previewId} (${drawn ? 'drawn' : 'superseded before drawn'}) → final ${finalId}`;
});

let parentId = null;
await step('tweak: parameters reload, regenerate skips the network (cached stages), the new entry links its parent', async () => {
  const card = newestCard();
  await card.waitFor();
  parentId = await card.getAttribute('data-mesh-id');
  await card.locator('[data-testid="gallery-tweak"]').click();
  await $('tweak-banner').waitFor();
  // A parameter of the extraction only (not foreground ratio or background): the scene codes are re-used. Not
  // remeshing: sf3d/src/mesh/remesh is a placeholder on this branch that fails every remesh with `internal`.
  const parentRes = await $('param-texture_resolution').inputValue();
  await $('param-texture_resolution').fill('512');
  await page.locator('[data-testid="value-texture_resolution"]', { hasText: '512 px' }).waitFor();
  const label = await $('generate').innerText();
  if (!/Regenerate/.test(label)) throw new Error(`start button says ${label}`);
  const mark = await start();
  await expectOutcome(mark, 'succeeded');
  const cached = await page.$$eval('[data-testid="stage-list"] > li[data-state="cached"]', (l) => l.map((li) => li.dataset.testid.replace('stage-', '')));
  if (cached.join() !== ENCODE_STAGES.join()) throw new Error(`cached stages: ${cached.join(', ') || 'none'}`);
  const rest = await page.$$eval('[data-testid="stage-list"] > li', (l) => l.slice(7).map((li) => li.dataset.state));
  if (rest.join() !== 'done,skipped,done,done,done') throw new Error(`extraction stages: ${rest.join(', ')}`);
  // The gallery is re-read after `done`.
  await page.waitForFunction((p) => document.querySelector('[data-testid="gallery-item"]')?.dataset.meshId !== p, parentId)
    .catch(() => { throw new Error('newest entry is still the parent'); });
  const child = newestCard();
  const childId = await child.getAttribute('data-mesh-id');
  await child.locator('[data-testid="gallery-parent"]').waitFor();
  const meta = (await getJson(`/api/meshes/${childId}`)).metadata;
  if (meta.parent_id !== parentId || meta.params.texture_resolution !== 512) throw new Error(`child metadata: parent ${meta.parent_id}, texture ${meta.params.texture_resolution}`);
  await $('reset-params').click();
  return `texture ${parentRes} → 512, ${cached.length} stages cached, ${childId} ← ${parentId}`;
});

await step('compare with the parent: two viewers draw, their cameras move together', async () => {
  await newestCard().locator('[data-testid="gallery-compare-parent"]').click();
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

await step('a failing job (a fully transparent PNG) shows the error in words with what to do', async () => {
  // A valid PNG passes the page's own check (it only reads the signature); the server finds no object in it.
  await pick(image('empty.png', png(64, 64, () => [0, 0, 0, 0])));
  if (await $('tweak-banner').count()) throw new Error('still tweaking after picking a new image');
  const mark = await start();
  await expectOutcome(mark, 'failed');
  const t = await $('job-error').innerText();
  if (!/transparent/i.test(t) || !/No object was found/i.test(t) || !/no_foreground/.test(t)) throw new Error(`error text: ${t}`);
  return t.replace(/\n+/g, ' / ');
});

await step('queue position while waiting (every worker busy with a 2048 px REST job, as many more waiting), the position moves up, then cancel', async () => {
  // Jobs from another client: one per worker runs and as many wait, so the page's job is behind them and reaches
  // position 0 only once every waiting job has started — it then stays there until one of them ends (with one job
  // waiting per worker, two running jobs ending together cannot take it from its first position straight to
  // running).
  const workers = (await getJson('/api/health')).workers.length;
  const jobs = [];
  for (let i = 0; i < workers; i++) {
    jobs.push(restGenerate(`queue-a${i}.png`, { texture_resolution: 2048 }));
    await waitQueue((q) => q.running === i + 1 && q.waiting === 0, `${i + 1} job(s) running`);
  }
  for (let i = 0; i < workers; i++) {
    jobs.push(restGenerate(`queue-b${i}.png`, { texture_resolution: 2048 }));
    await waitQueue((q) => q.waiting === i + 1, `${i + 1} job(s) waiting`);
  }
  await pick(image('queued.png'));
  const mark = await start();
  await page.locator(`[data-testid="queue-position"][data-position="${workers}"]`).waitFor({ timeout: JOB_TIMEOUT });
  const pos = await $('queue-position').innerText();
  const jobId = await sessionJob();
  // The running jobs end, the waiting ones start: the server pushes the new positions.
  await page.locator('[data-testid="queue-position"][data-position="0"]').waitFor({ timeout: JOB_TIMEOUT });
  const moved = await $('queue-position').innerText();
  await page.locator('[data-testid="cancel"]:not([disabled])').click();
  await expectOutcome(mark, 'cancelled');
  if (await sessionJob()) throw new Error('the cancelled job is still in the session');
  await Promise.all(jobs);
  const ran = (await listAll()).filter((e) => e.metadata.source_name === 'queued.png');
  if (ran.length) throw new Error(`the cancelled job ${jobId} ran: ${ran.map((e) => e.id).join(', ')}`);
  return `${workers} worker(s): ${pos} → ${moved} → cancelled (job ${jobId})`;
});

await step('a reload re-attaches to the running job (job id in sessionStorage)', async () => {
  await $('param-texture_resolution').fill('2048');
  await page.locator('[data-testid="value-texture_resolution"]', { hasText: '2048 px' }).waitFor();
  await pick(image('reload.png'));
  const mark = await start();
  await phaseSince(mark, ['running']);
  const jobId = await sessionJob();
  if (!jobId) throw new Error('no job id in the session');
  await page.reload();
  await connected();
  // The stage list comes back from the server's `status` snapshot while the job still runs.
  const resumed = await phaseSince(0, ['running', 'succeeded', 'failed', 'cancelled']);
  if (resumed !== 'running') throw new Error(`after the reload the job is ${resumed}, expected still running`);
  const shown = await page.$$eval('[data-testid="stage-list"] > li', (l) => l.filter((li) => li.dataset.state !== 'pending').length);
  if (shown === 0) throw new Error('no stage shown after re-attaching');
  await expectOutcome(0, 'succeeded');
  const left = await sessionJob();
  if (left) throw new Error(`job id still in the session: ${left}`);
  const meshId = await page.waitForFunction(() => window.__sf3dViewer?.ready && window.__sf3dViewer.mesh_id).then((h) => h.jsonValue());
  const meta = (await getJson(`/api/meshes/${meshId}`)).metadata;
  if (meta.source_name !== 'reload.png' || meta.params.texture_resolution !== 2048) throw new Error(`viewer shows ${meshId} (${meta.source_name})`);
  return `${shown}/12 stages shown on re-attaching to ${jobId}, then done: ${meshId}`;
});

await step('the socket reconnects after the server restarted (same port and data), and the job survives the restart', async () => {
  const before = await listAll();
  await $('param-texture_resolution').fill('2048');
  await pick(image('restart.png'));
  const mark = await start();
  await phaseSince(mark, ['running']);
  const jobId = await sessionJob();
  serverDown = true;
  // The harness stops the server gracefully: sockets close at once, the running job may finish (grace period).
  await control('stop');
  await page.locator('[data-testid="conn-state"][data-state="retrying"], [data-testid="conn-state"][data-state="connecting"]').first().waitFor();
  if (await phase() !== 'running') throw new Error(`while the server is away the job shows ${await phase()}`);
  await page.screenshot({ path: path.join(ARTIFACTS, 'flows-server-down.png'), fullPage: true });
  await control('start');
  await connected();
  serverDown = false;
  // The job is journaled: it either finished within the shutdown grace period or runs again on the new server;
  // the page re-subscribes and shows its result either way.
  await expectOutcome(mark, 'succeeded');
  const status = await getJson(`/api/jobs/${jobId}`);
  if (status.state !== 'succeeded') throw new Error(`GET /api/jobs/${jobId}: ${JSON.stringify(status)}`);
  const after = await listAll();
  const kept = before.every((e) => after.some((a) => a.id === e.id));
  if (!kept) throw new Error('gallery entries are missing after the restart (another data folder?)');
  const landed = after.filter((e) => !before.some((b) => b.id === e.id));
  if (landed.length !== 1 || landed[0].metadata.source_name !== 'restart.png') {
    throw new Error(`expected the one restart.png entry, got ${landed.map((e) => `${e.id} (${e.metadata.source_name})`).join(', ')}`);
  }
  await $('param-texture_resolution').fill('1024');
  return `job ${jobId} ended succeeded after ${status.attempts} attempt(s); ${after.length} entries kept`;
}, control ? null : 'SF3D_SERVER_CONTROL is not "stdio": nobody can restart the server');

fs.rmSync(tmp, { recursive: true, force: true });
await finish(browser);
