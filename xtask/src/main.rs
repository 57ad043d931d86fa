//! `cargo xtask`: the project's two entry points and the set-up they need.
//!
//! * `cargo xtask run [-- SERVE ARGS]` — install what is missing (pinned), build the frontend in release mode
//!   offline, and start `sf3d serve` on 127.0.0.1:9299.
//! * `cargo xtask test` — fmt check, clippy (native and wasm), all workspace tests, the Python client's pytest
//!   suite against a real `sf3d serve`, the wasm build of the frontend, the glTF-Validator and browser tests.
//! * `cargo xtask setup` — only the installation step; `cargo xtask frontend` — only the frontend build.
//!
//! Everything here shells out to the real tools; no network access is needed beyond the package registries
//! (crates.io, npm, PyPI, Debian) and rustup. Builds share one target directory under the user's cache folder
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
/// Debian's ChromeDriver (`chromium-driver`), the wasm-bindgen-test runner's driver; `CHROMEDRIVER` overrides it.
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Python packages of the documented clients (docs/clients.md), pinned; also the dependencies of the client
/// package (clients/python/pyproject.toml pins the same versions).
const PYTHON_PACKAGES: [&str; 2] = ["requests==2.32.3", "websockets==13.1"];
/// Python packages the test suites import, pinned: pytest and the client package's optional extras (its suite
/// feeds it NumPy and PIL images and draws a tqdm bar), schemathesis (the OpenAPI check of the live server), and
/// onnx + onnxruntime (the U²-Net reference of sf3d/tests/u2net/make_reference.py).
const PYTHON_TEST_PACKAGES: [&str; 7] = [
    "pytest==9.2.0",
    "numpy==2.4.6",
    "Pillow==13.0.0",
    "tqdm==4.70.1",
    "schemathesis==4.32.5",
    "onnx==1.23.2",
    "onnxruntime==1.32.0",
];
/// Oldest Python the pinned packages install on (numpy 2.4 needs 3.11).
const PYTHON_MIN: (u32, u32) = (3, 11);
/// The Python client package (`pip install ./clients/python`).
const CLIENT_PACKAGE: &str = "clients/python";

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
                "usage: cargo xtask <command>\n\n  run [-- ARGS]   set up, build the frontend, start `sf3d serve` on {}:{} (ARGS go to serve)\n  test            fmt, clippy, all tests, Python client tests, wasm build, glTF validation, browser tests\n  setup           install the pinned tools only\n  frontend        build the frontend into dist/ only",
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

    // 5. Python: the packages the client examples of docs/clients.md and the test suites import, pinned, and
    //    the client package itself (its example in docs/clients.md and its pytest suite import it).
    let pins: Vec<&str> = PYTHON_PACKAGES.iter().chain(PYTHON_TEST_PACKAGES.iter()).copied().collect();
    ensure_python_packages(&pins)?;
    ensure_client_package()?;

    // 6. three.js files the page imports (copied from node_modules so the build needs no network).
    vendor_three()?;
    Ok(())
}

/// The pins of `pins` (`name==version`) that are not installed at that version, each with what is installed;
/// `Err` when there is no usable `python3` (missing, or older than [`PYTHON_MIN`]).
fn python_missing(pins: &[&str]) -> Result<Vec<String>> {
    const SCRIPT: &str = r#"
import sys
from importlib.metadata import version, PackageNotFoundError
want = tuple(int(n) for n in sys.argv[1].split('.'))
if sys.version_info[:2] < want:
    sys.exit(f'python3 is {sys.version.split()[0]} ({sys.executable}); the pinned packages need {sys.argv[1]} or newer')
for pin in sys.argv[2:]:
    name, pinned = pin.split('==')
    try:
        have = version(name)
    except PackageNotFoundError:
        have = 'not installed'
    if have != pinned:
        print(f'{pin} ({have})')
"#;
    let out = cmd("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(format!("{}.{}", PYTHON_MIN.0, PYTHON_MIN.1))
        .args(pins)
        .output()
        .map_err(|e| format!("python3 is needed for the Python client tests and cannot be started: {e}"))?;
    if !out.status.success() {
        return Err(format!("python3 is unusable: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect())
}

/// Installs the pinned Python packages that are missing or at another version (all pins in one `pip install`,
/// so that the resolver sees every constraint), and fails when pip could not bring them to their pins.
fn ensure_python_packages(pins: &[&str]) -> Result {
    let missing = python_missing(pins)?;
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing Python packages: {}", missing.join(", "));
    let mut c = cmd("python3");
    c.args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]).args(pins);
    run_cmd(c)?;
    let still = python_missing(pins)?;
    if !still.is_empty() {
        return Err(format!(
            "after `pip install`, python3 still does not see these pinned packages: {} (another installation \
             shadows them? check `python3 -m pip list -v`)",
            still.join(", ")
        ));
    }
    Ok(())
}

/// A digest of the client package's sources (to reinstall it only when they changed).
fn client_package_digest() -> Result<String> {
    use std::hash::{Hash, Hasher};
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            if path.is_dir() {
                if name != "__pycache__" && !name.ends_with(".egg-info") {
                    walk(&path, files)?;
                }
            } else {
                files.push(path);
            }
        }
        Ok(())
    }
    let dir = root().join(CLIENT_PACKAGE);
    let mut files = vec![dir.join("pyproject.toml"), dir.join("README.md")];
    walk(&dir.join("src"), &mut files).map_err(|e| format!("{}: {e}", dir.display()))?;
    files.sort();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for f in &files {
        f.strip_prefix(&dir).unwrap_or(f).hash(&mut h);
        fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?.hash(&mut h);
    }
    Ok(format!("{:016x}", h.finish()))
}

/// `pip install ./clients/python` when its sources changed since the last install (or it is not importable).
fn ensure_client_package() -> Result {
    let stamp = target_dir().join("sf3d-client-python.stamp");
    let digest = client_package_digest()?;
    let importable = cmd("python3").args(["-c", "import sf3d_client"]).output().is_ok_and(|o| o.status.success());
    if importable && fs::read_to_string(&stamp).ok().as_deref() == Some(digest.as_str()) {
        return Ok(());
    }
    let mut c = cmd("python3");
    c.args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", &format!("./{CLIENT_PACKAGE}")]);
    run_cmd(c)?;
    if let Some(parent) = stamp.parent() {
        fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    fs::write(&stamp, digest).map_err(|e| format!("{}: {e}", stamp.display()))
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

/// The version a Chromium or ChromeDriver binary reports (`Chromium 156.0.8078.108 built on Debian …`,
/// `ChromeDriver 156.0.8078.108 (…)`): `None` when it is not there, `Err` when it is there but does not run.
fn browser_tool_version(path: &str) -> Result<Option<String>> {
    if !Path::new(path).exists() {
        return Ok(None);
    }
    let out = Command::new(path)
        .arg("--version")
        .output()
        .map_err(|e| format!("{path} exists but cannot be run ({e}); remove it or repair its package"))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() {
        return Err(format!(
            "{path} exists but `{path} --version` failed ({}): {}{}",
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    text.split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()) && w.contains('.'))
        .map(|v| Some(v.to_string()))
        .ok_or_else(|| format!("{path} --version printed {text:?}, which names no version"))
}

fn major(version: &str) -> &str {
    version.split('.').next().unwrap_or(version)
}

/// The version of an installed Debian package (`None` when it is not installed).
fn deb_version(package: &str) -> Option<String> {
    output_of({
        let mut c = cmd("dpkg-query");
        c.args(["-W", "-f=${Status} ${Version}", package]);
        c
    })
    .and_then(|s| s.strip_prefix("install ok installed ").map(str::to_string))
}

/// Makes sure the browser tests have Debian's Chromium and a ChromeDriver of the same major version, each
/// checked on its own: what is missing is installed (pinned; at the installed one's version when only its partner
/// is missing), and an existing one that does not run or does not match is an error that says so. Returns the
/// driver's path.
fn ensure_browser() -> Result<String> {
    let driver = env::var("CHROMEDRIVER").unwrap_or_else(|_| CHROMEDRIVER.to_string());
    let have_browser = browser_tool_version(CHROMIUM)?;
    let have_driver = browser_tool_version(&driver)?;
    let mut packages = Vec::new();
    if have_browser.is_none() {
        packages.push("chromium");
    }
    if have_driver.is_none() {
        if driver != CHROMEDRIVER {
            return Err(format!("CHROMEDRIVER={driver} does not exist"));
        }
        packages.push("chromium-driver");
    }
    if !packages.is_empty() {
        // The partner that is there fixes the version, so that the two match.
        let installed = deb_version("chromium").or_else(|| deb_version("chromium-driver"));
        if have_browser.is_some() && installed.is_none() {
            return Err(format!(
                "ChromeDriver is missing ({CHROMEDRIVER}) and {CHROMIUM} is not Debian's chromium package, so no \
                 matching driver can be installed: install a ChromeDriver {} and set CHROMEDRIVER to its path",
                have_browser.as_deref().unwrap_or_default()
            ));
        }
        let version = installed.clone().unwrap_or_else(|| CHROMIUM_VERSION.to_string());
        eprintln!("xtask: installing {} {version} for the browser tests", packages.join(" and "));
        let apt = |args: &[String]| {
            let mut c = cmd("apt-get");
            c.env("DEBIAN_FRONTEND", "noninteractive").args(args);
            run_cmd(c)
        };
        let install = |pkgs: Vec<String>| {
            apt(&["install".into(), "-y".into(), "--no-install-recommends".into()]
                .into_iter()
                .chain(pkgs)
                .collect::<Vec<_>>())
        };
        apt(&["update".into()])?;
        if install(packages.iter().map(|p| format!("{p}={version}")).collect()).is_err() {
            // Superseded by a security update: take the archive's current build of both, so they still match.
            eprintln!("xtask: warning: chromium {version} is gone from the archive; installing the current one");
            install(vec!["chromium".into(), "chromium-driver".into()])?;
        }
    }
    let browser = browser_tool_version(CHROMIUM)?.ok_or_else(|| format!("{CHROMIUM} is still missing"))?;
    let drv = browser_tool_version(&driver)?.ok_or_else(|| format!("{driver} is still missing"))?;
    if major(&browser) != major(&drv) {
        return Err(format!(
            "Chromium {browser} ({CHROMIUM}) and ChromeDriver {drv} ({driver}) differ in major version; the \
             browser tests need them equal: `apt-get install chromium=V chromium-driver=V` with one Debian version \
             V, or set CHROMEDRIVER to a ChromeDriver {}",
            major(&browser)
        ));
    }
    Ok(driver)
}

fn test(args: &[String]) -> Result {
    let quick = args.iter().any(|a| a == "--no-browser");
    setup()?;
    let chromedriver = if quick { None } else { Some(ensure_browser()?) };
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
            .env("SF3D_REQUIRE_ONNXRUNTIME", "1")
            // The PostgreSQL (and NATS) this machine kind starts: the tests that need them fail instead of skipping.
            .env("SF3D_REQUIRE_SERVICES", "1")
            .env("SF3D_GLB_DIR", &glb_dir)
            .env("SF3D_ARTIFACTS", &artifacts);
        c
    };
    let mut tests = cargo();
    tests.args(["test", "--workspace", "--no-fail-fast"]);
    run_cmd(with_env(tests))?;

    // The Python client package's suite (clients/python/tests) against real `sf3d serve` processes; its GLBs go
    // to the validator too.
    let mut build = cargo();
    build.args(["build", "-p", "sf3d-backend", "--bin", "sf3d"]);
    run_cmd(build)?;
    let mut pytest = cmd("python3");
    pytest
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", &format!("{CLIENT_PACKAGE}/tests")])
        .env("SF3D_BIN", target_dir().join("debug").join("sf3d"));
    run_cmd(with_env(pytest))?;

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
            .env("CHROMEDRIVER", chromedriver.as_deref().unwrap_or(CHROMEDRIVER));
        run_cmd(wasm)?;
        eprintln!("xtask: screenshots in {}", artifacts.display());
    }
    Ok(())
}
