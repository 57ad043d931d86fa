// A protocol mock of `sf3d serve` for developing and smoke-testing the web UI without the engine:
// serves dist/ and speaks docs/protocol.md (WebSocket /ws, /api/health, the gallery routes) with canned
// stage events and a textured-box GLB built from the uploaded image. Not a reference server; the real one
// is backend/. Dependency-free (node: modules only, a minimal RFC 6455 WebSocket).
//
//   node tests/browser/mock-server.mjs [--port 9300] [--dist dist] [--stage-ms 40] [--seed N]
//
// `--seed N` starts with N gallery entries (a 32x32 test image), enough to page through.
//
// Behaviour switches, for trying UI paths by hand: an upload named `fail*.png` fails with `no_surface`;
// `slow*.png` waits in the queue for 3 s (position updates) and runs stages 10x slower.

import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const PORT = Number(arg('port', 9300));
const DIST = path.resolve(arg('dist', 'dist'));
const STAGE_MS = Number(arg('stage-ms', 40));
const SEED = Number(arg('seed', 0));
const SEED_PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAACAAAAAgCAYAAABzenr0AAAAmElEQVR42mNgGAUDDBjJ0XQnwOY/NnGVDUcYaeYAXJbiAsQ6hokWlpOih5HaFpMaGky0tpyQWUwDnQuYaO17QmYykmq5j8YCvBZtuZFAUnoYnFEwYA6gRdwTiuLRKBh1wOByADn1OaUV02gUMNKrMsIVxUzUatuR2ygZvGmAmqGAzyyiLCE3TRDjCSZqGUSungHvmIyCAQcAptQ/LiwhSj0AAAAASUVORK5CYII=', 'base64');

const STAGES = ['decode', 'remove_background', 'prepare', 'encode_image', 'backbone', 'triplane',
  'estimate_material', 'extract_mesh', 'remesh', 'unwrap_uv', 'bake_texture', 'export'];
const DEVICE = { kind: 'cpu', name: 'cpu (mock)' };
const MODEL = { id: 'builtin-test', test_model: true, dtype: 'f32' };
const DEFAULTS = { texture_resolution: 1024, foreground_ratio: 0.85, remesh: 'none', vertex_count: -1, background: 'auto', preview: false };

const meshes = new Map(); // id -> { entry, files: { 'mesh.glb': Buffer, ... } }
const jobs = new Map(); // id -> { state, stages: Map, subscribers: Set, cancelled }
let queue = 0;

let serial = 0;
const ulid = () => (Date.now().toString(36) + (serial++).toString(36).padStart(4, '0') + crypto.randomBytes(4).toString('hex')).toUpperCase().padEnd(26, '0').slice(0, 26);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- GLB: a unit box with UVs, textured with the uploaded image ------------------------------------------

function boxGlb(png) {
  const faces = [
    [[1, 0, 0], [0, 0, -1], [0, 1, 0]], [[-1, 0, 0], [0, 0, 1], [0, 1, 0]],
    [[0, 1, 0], [1, 0, 0], [0, 0, -1]], [[0, -1, 0], [1, 0, 0], [0, 0, 1]],
    [[0, 0, 1], [1, 0, 0], [0, 1, 0]], [[0, 0, -1], [-1, 0, 0], [0, 1, 0]],
  ];
  const pos = []; const nrm = []; const uv = []; const idx = [];
  for (const [n, u, v] of faces) {
    const base = pos.length / 3;
    for (const [a, b] of [[-1, -1], [1, -1], [1, 1], [-1, 1]]) {
      for (let k = 0; k < 3; k++) pos.push(0.5 * (n[k] + a * u[k] + b * v[k]));
      nrm.push(...n);
      uv.push((a + 1) / 2, 1 - (b + 1) / 2);
    }
    idx.push(base, base + 1, base + 2, base, base + 2, base + 3);
  }
  const f32 = (a) => Buffer.from(new Float32Array(a).buffer);
  const pad4 = (b, fill = 0) => Buffer.concat([b, Buffer.alloc((4 - (b.length % 4)) % 4, fill)]);
  const parts = [f32(pos), f32(nrm), f32(uv), Buffer.from(new Uint16Array(idx).buffer), png];
  const views = []; let offset = 0; const chunks = [];
  for (const p of parts) {
    views.push({ buffer: 0, byteOffset: offset, byteLength: p.length });
    const padded = pad4(p);
    chunks.push(padded);
    offset += padded.length;
  }
  const bin = Buffer.concat(chunks);
  views[0].target = views[1].target = views[2].target = 34962;
  views[3].target = 34963;
  const json = {
    asset: { version: '2.0', generator: 'sf3d-studio mock' },
    scene: 0, scenes: [{ nodes: [0] }], nodes: [{ mesh: 0 }],
    meshes: [{ primitives: [{ attributes: { POSITION: 0, NORMAL: 1, TEXCOORD_0: 2 }, indices: 3, material: 0 }] }],
    materials: [{ pbrMetallicRoughness: { baseColorTexture: { index: 0 }, metallicFactor: 0.1, roughnessFactor: 0.6 } }],
    textures: [{ source: 0, sampler: 0 }], samplers: [{}], images: [{ bufferView: 4, mimeType: 'image/png' }],
    accessors: [
      { bufferView: 0, componentType: 5126, count: 24, type: 'VEC3', min: [-0.5, -0.5, -0.5], max: [0.5, 0.5, 0.5] },
      { bufferView: 1, componentType: 5126, count: 24, type: 'VEC3' },
      { bufferView: 2, componentType: 5126, count: 24, type: 'VEC2' },
      { bufferView: 3, componentType: 5123, count: 36, type: 'SCALAR' },
    ],
    bufferViews: views, buffers: [{ byteLength: bin.length }],
  };
  const j = pad4(Buffer.from(JSON.stringify(json)), 0x20);
  const header = Buffer.alloc(12);
  header.write('glTF', 0, 'latin1'); header.writeUInt32LE(2, 4); header.writeUInt32LE(12 + 8 + j.length + 8 + bin.length, 8);
  const ch = (len, type) => { const b = Buffer.alloc(8); b.writeUInt32LE(len, 0); b.write(type, 4, 'latin1'); return b; };
  return Buffer.concat([header, ch(j.length, 'JSON'), j, ch(bin.length, 'BIN\0'), bin]);
}

// ---- minimal WebSocket --------------------------------------------------------------------------------

function wsSend(sock, data) {
  const binary = Buffer.isBuffer(data);
  const payload = binary ? data : Buffer.from(data);
  let head;
  if (payload.length < 126) head = Buffer.from([binary ? 0x82 : 0x81, payload.length]);
  else if (payload.length < 65536) { head = Buffer.alloc(4); head[0] = binary ? 0x82 : 0x81; head[1] = 126; head.writeUInt16BE(payload.length, 2); }
  else { head = Buffer.alloc(10); head[0] = binary ? 0x82 : 0x81; head[1] = 127; head.writeBigUInt64BE(BigInt(payload.length), 2); }
  if (!sock.destroyed) sock.write(Buffer.concat([head, payload]));
}

function wsAccept(req, sock, onMessage, onClose) {
  const key = req.headers['sec-websocket-key'];
  const accept = crypto.createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
  sock.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
  let buf = Buffer.alloc(0); let frag = []; let fragOp = 0;
  sock.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      if (buf.length < 2) return;
      const fin = buf[0] & 0x80; const op = buf[0] & 0x0f; const masked = buf[1] & 0x80;
      let len = buf[1] & 0x7f; let at = 2;
      if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); at = 4; }
      else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); at = 10; }
      const need = at + (masked ? 4 : 0) + len;
      if (buf.length < need) return;
      let payload = buf.subarray(at + (masked ? 4 : 0), need);
      if (masked) { const m = buf.subarray(at, at + 4); payload = Buffer.from(payload.map((b, i) => b ^ m[i % 4])); }
      buf = buf.subarray(need);
      if (op === 8) { sock.end(Buffer.from([0x88, 0])); return; }
      if (op === 9) { sock.write(Buffer.concat([Buffer.from([0x8a, payload.length]), payload])); continue; }
      if (op === 10) continue;
      if (op !== 0) { fragOp = op; frag = []; }
      frag.push(payload);
      if (fin) onMessage(fragOp === 1 ? Buffer.concat(frag).toString('utf8') : Buffer.concat(frag));
    }
  });
  sock.on('close', onClose);
  sock.on('error', () => {});
}

// ---- jobs ---------------------------------------------------------------------------------------------

function broadcast(job, msg) {
  for (const s of job.subscribers) wsSend(s, JSON.stringify(msg));
}

async function runJob(job_id, params, image, filename, parent) {
  const job = jobs.get(job_id);
  const slow = /^slow/i.test(filename || '');
  const fail = /^fail/i.test(filename || '');
  const t = slow ? STAGE_MS * 10 : STAGE_MS;
  queue++;
  if (slow) for (let p = 2; p >= 0; p--) { broadcast(job, { type: 'queue', job_id, position: p }); job.position = p; await sleep(1000); }
  job.state = 'running';
  const timings = [];
  const cached = parent && params.foreground_ratio === parent.metadata.params.foreground_ratio && params.background === parent.metadata.params.background;
  for (const stage of STAGES) {
    if (job.cancelled) { job.state = 'cancelled'; broadcast(job, { type: 'cancelled', job_id }); queue--; return; }
    const encode = STAGES.indexOf(stage) <= STAGES.indexOf('estimate_material');
    let state = 'finished'; let label;
    if (cached && encode) state = 'cached';
    else if (stage === 'remove_background') { state = 'skipped'; label = 'image has alpha'; }
    else if (stage === 'remesh' && params.remesh === 'none' && params.vertex_count === -1) state = 'skipped';
    if (state === 'finished') {
      const ev = { type: 'stage', job_id, stage, state: 'started', elapsed_ms: 0 };
      broadcast(job, ev); job.stages.set(stage, ev);
      if (stage === 'backbone') {
        for (let b = 1; b <= 4; b++) {
          await sleep(t);
          const pe = { type: 'stage', job_id, stage, state: 'progress', value: b, max: 4, elapsed_ms: b * t, label: `block ${b}/4` };
          broadcast(job, pe); job.stages.set(stage, pe);
        }
      } else await sleep(t);
      if (fail && stage === 'extract_mesh') {
        job.state = 'failed';
        broadcast(job, { type: 'error', job_id, code: 'no_surface', message: 'no surface found: every grid point is outside the object' });
        queue--; return;
      }
    }
    const ms = state === 'finished' ? (stage === 'backbone' ? 4 * t : t) : 0;
    const done = { type: 'stage', job_id, stage, state, elapsed_ms: ms, ...(label ? { label } : {}) };
    broadcast(job, done); job.stages.set(stage, done);
    timings.push({ stage, ms, state });
    if (stage === 'extract_mesh' && params.preview) {
      const prev = store(image, { ...params, texture_resolution: 512, remesh: 'none', vertex_count: -1, preview: false }, filename, parent, timings, true);
      broadcast(job, { type: 'preview', job_id, mesh_id: prev.id, urls: prev.urls, metadata: prev.metadata });
      await sleep(t * 5);
    }
  }
  const entry = store(image, params, filename, parent, timings, false);
  job.state = 'succeeded';
  queue--;
  broadcast(job, { type: 'done', job_id, mesh_id: entry.id, urls: entry.urls, metadata: entry.metadata });
}

function store(image, params, filename, parent, timings, preview) {
  const id = ulid();
  const urls = Object.fromEntries([['glb', 'mesh.glb'], ['input', 'input.png'], ['preprocessed', 'preprocessed.png'], ['metadata', 'metadata.json']]
    .map(([k, f]) => [k, `/api/meshes/${id}/${f}`]));
  const glb = boxGlb(image);
  const metadata = {
    mesh_id: id, created_at: new Date().toISOString().replace(/\.\d+Z$/, 'Z'), ...(parent ? { parent_id: parent.id } : {}),
    ...(filename ? { source_name: filename } : {}), params, model: MODEL, device: DEVICE, timings: [...timings],
    total_ms: timings.reduce((a, t) => a + t.ms, 0), vertex_count: 24, face_count: 12, roughness: 0.6, metallic: 0.1,
    glb_sha256: crypto.createHash('sha256').update(glb).digest('hex'), glb_bytes: glb.length, preview, generator: 'sf3d-studio mock',
  };
  const entry = { id, metadata, urls, cached: true };
  meshes.set(id, { entry, files: { 'mesh.glb': glb, 'input.png': image, 'preprocessed.png': image, 'metadata.json': Buffer.from(JSON.stringify(metadata)) } });
  return entry;
}

function startJob(sock, params, image, filename, request_id, parent) {
  const job_id = ulid();
  const job = { state: 'queued', stages: new Map(), subscribers: new Set([sock]), cancelled: false, position: queue };
  jobs.set(job_id, job);
  wsSend(sock, JSON.stringify({ type: 'accepted', job_id, ...(request_id ? { request_id } : {}), position: queue }));
  runJob(job_id, params, image, filename, parent);
}

function validate(p) {
  const params = { ...DEFAULTS, ...p };
  if (params.texture_resolution < 512 || params.texture_resolution > 2048) return [params, 'texture_resolution', `${params.texture_resolution} is outside 512..=2048`];
  if (params.foreground_ratio < 0.5 || params.foreground_ratio > 1) return [params, 'foreground_ratio', `${params.foreground_ratio} is outside 0.5..=1`];
  if (params.vertex_count !== -1 && (params.vertex_count < 100 || params.vertex_count > 20000)) return [params, 'vertex_count', `${params.vertex_count} is neither -1 nor within 100..=20000`];
  return [params, null, null];
}

function onSocket(req, sock) {
  let pending = null; // a generate waiting for its binary frame
  const mine = new Set();
  wsAccept(req, sock, (msg) => {
    if (Buffer.isBuffer(msg)) {
      if (!pending) return wsSend(sock, JSON.stringify({ type: 'error', code: 'bad_request', message: 'unexpected binary frame' }));
      const { params, request_id, filename } = pending; pending = null;
      if (!(msg[0] === 0x89 && msg[1] === 0x50) && !(msg[0] === 0xff && msg[1] === 0xd8)) {
        return wsSend(sock, JSON.stringify({ type: 'error', code: 'unsupported_image', message: 'the upload is not a PNG, JPEG or WebP image' }));
      }
      return startJob(sock, params, msg, filename, request_id, null);
    }
    let m;
    try { m = JSON.parse(msg); } catch { return wsSend(sock, JSON.stringify({ type: 'error', code: 'bad_request', message: 'not JSON' })); }
    if (m.type === 'generate' || m.type === 'regenerate') {
      const [params, field, why] = validate(m.params || {});
      if (field) return wsSend(sock, JSON.stringify({ type: 'error', code: 'invalid_params', message: `invalid ${field}: ${why}`, field }));
      if (m.type === 'regenerate') {
        const parent = meshes.get(m.mesh_id);
        if (!parent) return wsSend(sock, JSON.stringify({ type: 'error', code: 'not_found', message: `no mesh ${m.mesh_id}` }));
        return startJob(sock, params, parent.files['input.png'], parent.entry.metadata.source_name, m.request_id, parent.entry);
      }
      pending = { params, request_id: m.request_id, filename: m.image && m.image.filename };
    } else if (m.type === 'cancel') {
      const job = jobs.get(m.job_id); if (job) job.cancelled = true;
    } else if (m.type === 'subscribe') {
      const job = jobs.get(m.job_id);
      if (!job) return wsSend(sock, JSON.stringify({ type: 'error', job_id: m.job_id, code: 'not_found', message: `no job ${m.job_id}` }));
      job.subscribers.add(sock); mine.add(job);
      const stages = [...job.stages.values()].map(({ stage, state, value, max, elapsed_ms }) => ({ stage, state, value, max, elapsed_ms }));
      wsSend(sock, JSON.stringify({ type: 'status', job_id: m.job_id, state: job.state, ...(job.state === 'queued' ? { position: job.position } : {}), stages }));
    } else {
      wsSend(sock, JSON.stringify({ type: 'error', code: 'unknown_message', message: `unknown message type ${m.type}` }));
    }
  }, () => { for (const job of jobs.values()) job.subscribers.delete(sock); });
  wsSend(sock, JSON.stringify({ type: 'hello', protocol: 1, server_version: '0.1.0-mock', device: DEVICE, model: MODEL, auth_required: false, max_upload_bytes: 20971520 }));
}

// ---- HTTP ---------------------------------------------------------------------------------------------

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.css': 'text/css', '.png': 'image/png', '.json': 'application/json', '.glb': 'model/gltf-binary' };
const json = (res, status, body) => { res.writeHead(status, { 'content-type': 'application/json' }); res.end(JSON.stringify(body)); };
const notFound = (res, what) => json(res, 404, { error: { code: 'not_found', message: `no ${what}` } });

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  const p = url.pathname;
  let m;
  if (p === '/api/health') return json(res, 200, { status: 'ok', version: '0.1.0-mock', protocol: 1, device: DEVICE, model: MODEL, queue: { waiting: 0, running: queue, capacity: 16 }, auth_required: false });
  if (p === '/api/meshes' && req.method === 'GET') {
    const all = [...meshes.values()].map((m) => m.entry).filter((e) => !e.metadata.preview).reverse();
    const limit = Number(url.searchParams.get('limit') || 20);
    const cursor = url.searchParams.get('cursor');
    const start = cursor ? all.findIndex((e) => e.id === cursor) + 1 : 0;
    const items = all.slice(start, start + limit);
    return json(res, 200, { items, ...(start + limit < all.length ? { next_cursor: items[items.length - 1].id } : {}), skipped: 0 });
  }
  if ((m = p.match(/^\/api\/meshes\/([^/]+)$/))) {
    const mesh = meshes.get(m[1]);
    if (!mesh) return notFound(res, `mesh ${m[1]}`);
    if (req.method === 'DELETE') { meshes.delete(m[1]); res.writeHead(204); return res.end(); }
    return json(res, 200, mesh.entry);
  }
  if ((m = p.match(/^\/api\/meshes\/([^/]+)\/(mesh\.glb|input\.png|preprocessed\.png|metadata\.json)$/))) {
    const mesh = meshes.get(m[1]);
    if (!mesh) return notFound(res, `mesh ${m[1]}`);
    res.writeHead(200, { 'content-type': TYPES[path.extname(m[2])] });
    return res.end(mesh.files[m[2]]);
  }
  if (p.startsWith('/api/')) return notFound(res, `route ${p}`);
  let file = path.join(DIST, decodeURIComponent(p));
  if (!file.startsWith(DIST) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) file = path.join(DIST, 'index.html');
  res.writeHead(200, { 'content-type': TYPES[path.extname(file)] || 'application/octet-stream' });
  fs.createReadStream(file).pipe(res);
});
server.on('upgrade', (req, sock) => {
  if (new URL(req.url, 'http://x').pathname !== '/ws') return sock.destroy();
  onSocket(req, sock);
});
for (let i = 0; i < SEED; i++) store(SEED_PNG, { ...DEFAULTS }, `seed-${String(i).padStart(2, '0')}.png`, null, [], false);
server.listen(PORT, '127.0.0.1', () => console.log(`mock sf3d serve on http://127.0.0.1:${PORT} (dist ${DIST})`));
