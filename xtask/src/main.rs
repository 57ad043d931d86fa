//! `cargo xtask`: the project's two entry points and the set-up they need.
//!
//! * `cargo xtask run [-- SERVE ARGS]` — install what is missing (pinned), build the frontend in release mode
//!   offline, and start `sf3d serve` on 127.0.0.1:9299.
//! * `cargo xtask test` — fmt check, clippy (native and wasm), all workspace tests, the wasm build of the
//!   frontend, the glTF-Validator and browser tests.
//! * `cargo xtask setup` — only the installation step; `cargo xtask frontend` — only the frontend build.
//!
//! Everything here shells out to the real tools; no network access is needed beyond the package registries
//! (crates.io, npm, Debian) and rustup. Builds share one target directory under the user's cache folder
//! (`$XDG_CACHE_HOME/sf3d-studio/target`, else `~/.cache/sf3d-studio/target`) so a fresh clone re-uses the
//! compiled dependencies; set `CARGO_TARGET_DIR` to choose another.

use std::env;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

/// Trunk 0.21.14 is the newest release that builds with rustc 1.95 (0.22 needs 1.96.1).
const TRUNK_VERSION: &str = "0.21.14";
/// Host and port of the seed's plan: the lab GPU box serves on 9299.
const DEFAULT_ADDR: (&str, &str) = ("127.0.0.1", "9299");
/// Debian's Chromium for the browser tests, pinned to the bookworm-security build the tests were last run with.
const CHROMIUM_VERSION: &str = "156.0.8078.108-1~deb12u1";
const CHROMIUM: &str = "/usr/bin/chromium";
/// Python packages of the documented clients (docs/clients.md), pinned.
const PYTHON_PACKAGES: [&str; 2] = ["requests==2.32.3", "websockets==13.1"];
const PYTHON_PACKAGES_VERSIONS: &str = "2.32.3 13.1";

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let (cmd, rest) = match args.split_first() {
        Some((c, r)) => (c.as_str(), r.to_vec()),
        None => ("help", Vec::new()),
    };
    let started = Instant::now();
    let result = match cmd {
        "run" => run(&rest),
        "test" => test(&rest),
        "setup" => setup(),
        "frontend" => setup().and_then(|()| build_frontend()),
        "help" | "--help" | "-h" => {
            println!(
                "usage: cargo xtask <command>\n\n  run [-- ARGS]   set up, build the frontend, start `sf3d serve` on {}:{} (ARGS go to serve)\n  test            fmt, clippy, all tests, wasm build, glTF validation, browser tests\n  setup           install the pinned tools only\n  frontend        build the frontend into dist/ only",
                DEFAULT_ADDR.0, DEFAULT_ADDR.1
            );
            Ok(())
        }
        other => Err(format!("unknown command {other:?}; try `cargo xtask help`")),
    };
    match result {
        Ok(()) => {
            if cmd == "test" {
                eprintln!("xtask: all checks passed in {:.0?}", started.elapsed());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    // xtask/ lives in the workspace root. `cargo xtask` (cargo run) sets CARGO_MANIFEST_DIR at run time; prefer it
    // over the compile-time value, which may name another checkout sharing the target dir.
    let manifest = env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

fn home() -> PathBuf {
    env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp"))
}

/// The shared cargo target directory (see the module docs).
fn target_dir() -> PathBuf {
    if let Some(dir) = env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let cache = env::var_os("XDG_CACHE_HOME").map(PathBuf::from).unwrap_or_else(|| home().join(".cache"));
    cache.join("sf3d-studio").join("target")
}

fn cargo_bin_dir() -> PathBuf {
    env::var_os("CARGO_HOME").map(PathBuf::from).unwrap_or_else(|| home().join(".cargo")).join("bin")
}

/// `PATH` with `~/.cargo/bin` and the npm tools (wasm-opt from npm `binaryen`) in front.
fn tool_path() -> std::ffi::OsString {
    let mut dirs = vec![root().join("node_modules").join(".bin"), cargo_bin_dir()];
    if let Some(p) = env::var_os("PATH") {
        dirs.extend(env::split_paths(&p));
    }
    env::join_paths(dirs).unwrap_or_default()
}

fn cmd(program: &str) -> Command {
    let mut c = Command::new(program);
    c.current_dir(root()).env("PATH", tool_path()).env("CARGO_TARGET_DIR", target_dir());
    c
}

fn cargo() -> Command {
    cmd(&env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn run_cmd(mut c: Command) -> Result {
    let shown = format!(
        "{} {}",
        c.get_program().to_string_lossy(),
        c.get_args().map(OsStr::to_string_lossy).collect::<Vec<_>>().join(" ")
    );
    eprintln!("xtask: $ {shown}");
    let t = Instant::now();
    let status = c.status().map_err(|e| format!("cannot start `{shown}`: {e}"))?;
    if status.success() {
        eprintln!("xtask:   ok ({:.1?})", t.elapsed());
        Ok(())
    } else {
        Err(format!("`{shown}` failed with {status}"))
    }
}

fn output_of(mut c: Command) -> Option<String> {
    let out = c.output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The `wasm-bindgen` version the lock file pins; wasm-bindgen-cli must be exactly this version.
fn locked_wasm_bindgen_version() -> Result<String> {
    let lock = fs::read_to_string(root().join("Cargo.lock")).map_err(|e| format!("Cargo.lock: {e}"))?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"wasm-bindgen\""
            && let Some(v) = lines.next().and_then(|l| l.trim().strip_prefix("version = \""))
        {
            return Ok(v.trim_end_matches('"').to_string());
        }
    }
    Err("Cargo.lock has no wasm-bindgen entry".into())
}

fn setup() -> Result {
    // 1. The wasm target.
    let targets = output_of({
        let mut c = cmd("rustup");
        c.args(["target", "list", "--installed"]);
        c
    })
    .unwrap_or_default();
    if !targets.lines().any(|l| l.trim() == "wasm32-unknown-unknown") {
        let mut c = cmd("rustup");
        c.args(["target", "add", "wasm32-unknown-unknown"]);
        run_cmd(c)?;
    }

    // 2. Trunk, pinned.
    let trunk = output_of({
        let mut c = cmd("trunk");
        c.arg("--version");
        c
    });
    if trunk.as_deref() != Some(&format!("trunk {TRUNK_VERSION}")) {
        eprintln!("xtask: installing trunk {TRUNK_VERSION} (about 16 minutes on 2 cores, once)");
        let mut c = cmd("cargo");
        c.env_remove("CARGO_TARGET_DIR").args(["install", "trunk", "--version", TRUNK_VERSION, "--locked"]);
        run_cmd(c)?;
    }

    // 3. wasm-bindgen-cli at the lock file's version. Not `--locked`: its lock pins a webpki-roots release
    //    that an offline registry mirror may lack; the lock file's own pin of the CLI version is what matters.
    let want = locked_wasm_bindgen_version()?;
    let have = output_of({
        let mut c = cmd("wasm-bindgen");
        c.arg("--version");
        c
    });
    if have.as_deref() != Some(&format!("wasm-bindgen {want}")) {
        eprintln!("xtask: installing wasm-bindgen-cli {want} (about 5 minutes, once)");
        let mut c = cmd("cargo");
        c.env_remove("CARGO_TARGET_DIR").args(["install", "wasm-bindgen-cli", "--version", &want]);
        run_cmd(c)?;
    }

    // 4. npm packages from the committed package-lock.json (three, binaryen's wasm-opt, gltf-validator,
    //    playwright-core). `npm ci` only when the lock changed since the last install.
    let lock = root().join("package-lock.json");
    let stamp = root().join("node_modules").join(".package-lock.json");
    let fresh = match (fs::metadata(&lock).and_then(|m| m.modified()), fs::metadata(&stamp).and_then(|m| m.modified()))
    {
        (Ok(l), Ok(s)) => s >= l,
        _ => false,
    };
    if !fresh {
        let mut c = cmd("npm");
        c.args(["ci", "--no-audit", "--no-fund"]);
        run_cmd(c)?;
    }

    // 5. The Python packages the client examples of docs/clients.md import (tests run them), pinned.
    let have_py = output_of({
        let mut c = cmd("python3");
        c.args(["-c", "import requests, websockets; print(requests.__version__, websockets.__version__)"]);
        c
    });
    if have_py.as_deref() != Some(PYTHON_PACKAGES_VERSIONS) {
        let mut c = cmd("python3");
        c.args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]).args(PYTHON_PACKAGES);
        run_cmd(c)?;
    }

    // 6. three.js files the page imports (copied from node_modules so the build needs no network).
    vendor_three()?;
    Ok(())
}

/// Copies the few three.js ES modules the viewer imports into `frontend/vendor/three`.
fn vendor_three() -> Result {
    let src = root().join("node_modules").join("three");
    let dst = root().join("frontend").join("vendor").join("three");
    let files = [
        ("build/three.module.js", "build/three.module.js"),
        ("build/three.core.js", "build/three.core.js"),
        ("examples/jsm/loaders/GLTFLoader.js", "addons/loaders/GLTFLoader.js"),
        ("examples/jsm/controls/OrbitControls.js", "addons/controls/OrbitControls.js"),
        ("examples/jsm/environments/RoomEnvironment.js", "addons/environments/RoomEnvironment.js"),
        ("examples/jsm/utils/BufferGeometryUtils.js", "addons/utils/BufferGeometryUtils.js"),
        ("examples/jsm/utils/SkeletonUtils.js", "addons/utils/SkeletonUtils.js"),
        ("LICENSE", "LICENSE"),
    ];
    for (from, to) in files {
        let (from, to) = (src.join(from), dst.join(to));
        let same = fs::read(&from).ok().is_some_and(|a| fs::read(&to).ok().is_some_and(|b| a == b));
        if !same {
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
            }
            fs::copy(&from, &to).map_err(|e| format!("copy {} → {}: {e}", from.display(), to.display()))?;
        }
    }
    Ok(())
}

fn build_frontend() -> Result {
    let mut c = cmd("trunk");
    c.args(["build", "--release", "--offline", "--skip-version-check"]);
    run_cmd(c)?;
    let wasm: u64 = fs::read_dir(root().join("dist"))
        .map_err(|e| format!("dist/: {e}"))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "wasm"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    eprintln!("xtask: frontend built into dist/ (wasm {:.0} KiB)", wasm as f64 / 1024.0);
    Ok(())
}

fn run(args: &[String]) -> Result {
    setup()?;
    build_frontend()?;
    let mut c = cargo();
    c.args(["build", "--release", "-p", "sf3d-backend", "--bin", "sf3d"]);
    run_cmd(c)?;
    let bin = target_dir().join("release").join("sf3d");
    let mut serve = cmd(bin.to_str().ok_or("target dir is not UTF-8")?);
    serve.arg("serve").arg("--dist").arg(root().join("dist"));
    let has = |flag: &str| args.iter().any(|a| a == flag || a.starts_with(&format!("{flag}=")));
    if !has("--host") {
        serve.args(["--host", DEFAULT_ADDR.0]);
    }
    if !has("--port") {
        serve.args(["--port", DEFAULT_ADDR.1]);
    }
    serve.args(args.iter().filter(|a| a.as_str() != "--"));
    run_cmd(serve)
}

/// Installs Debian's Chromium (pinned, falling back to the archive's current build with a warning when the
/// pinned one has been superseded by a security update).
fn ensure_chromium() -> Result {
    if Path::new(CHROMIUM).exists() {
        return Ok(());
    }
    let apt = |args: &[&str]| {
        let mut c = cmd("apt-get");
        c.env("DEBIAN_FRONTEND", "noninteractive").args(args);
        run_cmd(c)
    };
    apt(&["update"])?;
    let pinned = [format!("chromium={CHROMIUM_VERSION}"), format!("chromium-driver={CHROMIUM_VERSION}")];
    if apt(&["install", "-y", "--no-install-recommends", &pinned[0], &pinned[1]]).is_err() {
        eprintln!("xtask: warning: chromium {CHROMIUM_VERSION} is gone from the archive; installing the current one");
        apt(&["install", "-y", "--no-install-recommends", "chromium", "chromium-driver"])?;
    }
    Ok(())
}

fn test(args: &[String]) -> Result {
    let quick = args.iter().any(|a| a == "--no-browser");
    setup()?;
    if !quick {
        ensure_chromium()?;
    }
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    run_cmd(fmt)?;
    let mut clippy = cargo();
    clippy.args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]);
    run_cmd(clippy)?;
    let mut clippy_wasm = cargo();
    clippy_wasm.args([
        "clippy",
        "-p",
        "sf3d-frontend",
        "-p",
        "sf3d-shared",
        "--target",
        "wasm32-unknown-unknown",
        "--",
        "-D",
        "warnings",
    ]);
    run_cmd(clippy_wasm)?;

    // The frontend first: the browser tests serve dist/.
    build_frontend()?;

    // Every GLB the tests write is dumped here and validated by the Khronos glTF-Validator afterwards.
    let glb_dir = target_dir().join("glb-validation");
    let _ = fs::remove_dir_all(&glb_dir);
    fs::create_dir_all(&glb_dir).map_err(|e| format!("{}: {e}", glb_dir.display()))?;
    let artifacts = root().join("tests").join("artifacts");
    let with_env = |mut c: Command| {
        c.env("SF3D_DIST", root().join("dist"))
            .env("SF3D_REQUIRE_VALIDATOR", "1")
            .env("SF3D_GLB_DIR", &glb_dir)
            .env("SF3D_ARTIFACTS", &artifacts);
        c
    };
    let mut tests = cargo();
    tests.args(["test", "--workspace", "--no-fail-fast"]);
    run_cmd(with_env(tests))?;

    let mut validate = cmd("node");
    validate.arg(root().join("scripts").join("validate-glb.mjs")).arg(&glb_dir);
    run_cmd(validate)?;

    if !quick {
        // The real UI in headless Chromium against a real server (ignored by plain `cargo test`).
        let mut browser = cargo();
        browser.args(["test", "-p", "sf3d-e2e", "--test", "e2e", "browser", "--", "--ignored", "--nocapture"]);
        run_cmd(with_env(browser))?;
        // Component tests of the frontend in the browser (wasm-bindgen-test).
        let mut wasm = cargo();
        wasm.args(["test", "-p", "sf3d-frontend", "--target", "wasm32-unknown-unknown"])
            .env("CHROMEDRIVER", "/usr/bin/chromedriver");
        run_cmd(wasm)?;
        eprintln!("xtask: screenshots in {}", artifacts.display());
    }
    Ok(())
}
