// SF3D Studio three.js bridge: the only JavaScript of the app, called from Rust through the typed
// `#[wasm_bindgen(module = "/js/viewer.js")]` block in src/components/viewer.rs.
//
// It owns what only three.js can hold (renderer, scene, camera, controls, the loaded glTF); every UI
// state (which mesh, wireframe, albedo-only) lives in Rust and is passed in on each call.
//
// API (a viewer is an opaque object returned by createViewer):
//   createViewer(canvas, linkGroup) -> Promise<viewer>   rejects when three.js or WebGL is unavailable
//   showGlb(viewer, arrayBuffer, wireframe, albedoOnly) -> Promise<{vertices, faces}>
//                                                   resolves after the first frame with the mesh is drawn
//   setDisplay(viewer, wireframe, albedoOnly)      albedoOnly: unlit base colour, no normal map
//   clearViewer(viewer), resetView(viewer), disposeViewer(viewer)
// Viewers created with the same non-empty linkGroup share their camera (the compare view).

// three.js is imported on first use (through the page's import map), not statically: the app starts without
// waiting for it, and the module also loads where there is no import map (wasm-bindgen-test's runner).
let THREE, GLTFLoader, OrbitControls, RoomEnvironment;
async function loadThree() {
  if (THREE) return;
  const [three, loader, controls, room] = await Promise.all([
    import('three'),
    import('three/addons/loaders/GLTFLoader.js'),
    import('three/addons/controls/OrbitControls.js'),
    import('three/addons/environments/RoomEnvironment.js'),
  ]);
  ({ GLTFLoader } = loader);
  ({ OrbitControls } = controls);
  ({ RoomEnvironment } = room);
  THREE = three;
}

const CLEAR_COLOR = 0x1b1e24;
// The model is scaled to a unit bounding sphere, so one home position frames every mesh.
const HOME = [0.9, 0.7, 2.6];
const groups = new Map();

export async function createViewer(canvas, linkGroup) {
  await loadThree();
  // preserveDrawingBuffer: tests (and screenshots) read the canvas back after the frame.
  const renderer = new THREE.WebGLRenderer({ canvas, antialias: true, preserveDrawingBuffer: true });
  renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
  renderer.setClearColor(CLEAR_COLOR, 1);
  renderer.toneMapping = THREE.ACESFilmicToneMapping;

  const scene = new THREE.Scene();

  const camera = new THREE.PerspectiveCamera(40, 1, 0.01, 100);
  camera.position.set(...HOME);
  const controls = new OrbitControls(camera, canvas);
  controls.listenToKeyEvents(canvas); // arrow keys pan when the canvas has focus
  controls.minDistance = 0.5;
  controls.maxDistance = 20;

  const v = { renderer, scene, camera, controls, envMap: null, model: null, group: linkGroup || '', syncing: false };
  controls.addEventListener('change', () => {
    render(v);
    syncGroup(v);
  });
  v.resize = new ResizeObserver(() => resize(v));
  v.resize.observe(canvas);
  if (v.group) {
    if (!groups.has(v.group)) groups.set(v.group, new Set());
    groups.get(v.group).add(v);
  }
  resize(v);
  return v;
}

function resize(v) {
  const canvas = v.renderer.domElement;
  const w = Math.max(1, canvas.clientWidth);
  const h = Math.max(1, canvas.clientHeight);
  v.renderer.setSize(w, h, false);
  v.camera.aspect = w / h;
  v.camera.updateProjectionMatrix();
  render(v);
}

// The environment light is built with the first mesh, not with the viewer: prefiltering it is cheap on a GPU
// but takes seconds on a software rasteriser (headless Chromium's SwiftShader), which must not block page load.
function ensureEnvironment(v) {
  if (v.envMap) return;
  const pmrem = new THREE.PMREMGenerator(v.renderer);
  v.envMap = pmrem.fromScene(new RoomEnvironment()).texture;
  pmrem.dispose();
  v.scene.environment = v.envMap;
}

function render(v) {
  if (v.disposed) return;
  v.renderer.render(v.scene, v.camera);
}

function syncGroup(v) {
  if (!v.group || v.syncing) return;
  for (const other of groups.get(v.group) || []) {
    if (other === v) continue;
    other.syncing = true;
    other.camera.position.copy(v.camera.position);
    other.camera.quaternion.copy(v.camera.quaternion);
    other.controls.target.copy(v.controls.target);
    other.controls.update();
    other.syncing = false;
    render(other);
  }
}

function disposeModel(v) {
  if (!v.model) return;
  v.scene.remove(v.model);
  v.model.traverse((o) => {
    if (!o.isMesh) return;
    o.geometry.dispose();
    for (const m of [o.userData.pbr, o.userData.albedo]) {
      if (!m) continue;
      for (const key of Object.keys(m)) {
        if (m[key] && m[key].isTexture) m[key].dispose();
      }
      m.dispose();
    }
  });
  v.model = null;
}

function eachMesh(v, fn) {
  if (v.model) v.model.traverse((o) => { if (o.isMesh) fn(o); });
}

export function showGlb(v, buffer, wireframe, albedoOnly) {
  return new Promise((resolve, reject) => {
    new GLTFLoader().parse(buffer, '', (gltf) => {
      if (v.disposed) return reject(new Error('the viewer was closed'));
      disposeModel(v);
      ensureEnvironment(v);
      const model = gltf.scene;
      let vertices = 0;
      let faces = 0;
      model.traverse((o) => {
        if (!o.isMesh) return;
        const g = o.geometry;
        const n = g.attributes.position ? g.attributes.position.count : 0;
        vertices += n;
        faces += (g.index ? g.index.count : n) / 3;
        const pbr = o.material;
        // The unlit version shows the baked albedo as is: no lights, no normal map, no tone mapping.
        const albedo = new THREE.MeshBasicMaterial({
          map: pbr.map || null,
          color: pbr.color ? pbr.color.clone() : 0xffffff,
          side: pbr.side,
          transparent: pbr.transparent,
          alphaTest: pbr.alphaTest,
        });
        albedo.toneMapped = false;
        o.userData.pbr = pbr;
        o.userData.albedo = albedo;
      });
      // Centre the model and scale it to a unit bounding sphere.
      const box = new THREE.Box3().setFromObject(model);
      const sphere = box.getBoundingSphere(new THREE.Sphere());
      const pivot = new THREE.Group();
      model.position.sub(sphere.center);
      pivot.add(model);
      pivot.scale.setScalar(sphere.radius > 0 ? 1 / sphere.radius : 1);
      v.scene.add(pivot);
      v.model = pivot;
      setDisplay(v, wireframe, albedoOnly);
      resetView(v);
      resolve({ vertices, faces: Math.round(faces) });
    }, (err) => reject(new Error('could not read the GLB: ' + (err && err.message ? err.message : err))));
  });
}

export function setDisplay(v, wireframe, albedoOnly) {
  eachMesh(v, (o) => {
    const m = albedoOnly ? o.userData.albedo : o.userData.pbr;
    if (!m) return;
    m.wireframe = !!wireframe;
    o.material = m;
  });
  render(v);
}

export function clearViewer(v) {
  disposeModel(v);
  render(v);
}

export function resetView(v) {
  v.controls.target.set(0, 0, 0);
  v.camera.position.set(...HOME);
  v.camera.near = 0.01;
  v.camera.far = 100;
  v.camera.updateProjectionMatrix();
  v.controls.update(); // fires 'change': renders and syncs the group
  render(v);
}

export function disposeViewer(v) {
  v.disposed = true;
  if (v.group && groups.has(v.group)) {
    groups.get(v.group).delete(v);
    if (groups.get(v.group).size === 0) groups.delete(v.group);
  }
  v.resize.disconnect();
  v.controls.dispose();
  disposeModel(v);
  if (v.envMap) v.envMap.dispose();
  v.renderer.dispose();
  v.renderer.forceContextLoss();
}
