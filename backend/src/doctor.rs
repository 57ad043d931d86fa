//! `sf3d doctor` and `--device auto`: what this binary was built for, what the host has, and whether the two fit.
//!
//! The host side is probed through the NVIDIA driver API, loaded at run time (`libcuda.so.1`), so the probe works
//! in every build and on hosts without any NVIDIA software. candle's kernels are PTX, which the driver compiles
//! for the GPU at load time: a build for compute capability `X` runs on every GPU of capability `≥ X`, provided
//! the driver understands the PTX of the CUDA version that built it (a driver for that CUDA major version or newer).

use std::ffi::{c_char, c_int, c_uint};
use std::fmt::Write as _;

/// CUDA version the binary's kernels were compiled with (set by `scripts/build-cuda.sh`).
const BUILT_CUDA: Option<&str> = option_env!("SF3D_BUILD_CUDA_VERSION");
/// Compute capabilities the kernels were compiled for (candle's `CUDA_COMPUTE_CAP`, e.g. `90` or `80`).
const BUILT_CAPS: Option<&str> = option_env!("CUDA_COMPUTE_CAP");
/// Libraries a CUDA build loads besides the driver, by SONAME (those of `scripts/build-cuda.sh`'s CUDA 13 build).
const CUDA_LIBRARIES: [&str; 4] = ["libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13", "libcurand.so.10"];
/// `CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR` / `_MINOR` of the driver API.
const ATTR_CC_MAJOR: c_int = 75;
const ATTR_CC_MINOR: c_int = 76;

/// One GPU as the driver reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Gpu {
    /// Ordinal (`cuda:N`).
    pub index: usize,
    /// Marketing name.
    pub name: String,
    /// Compute capability `(major, minor)`.
    pub capability: (u32, u32),
    /// Memory in bytes, when reported.
    pub memory_bytes: Option<u64>,
}

/// What the driver API says about the host.
#[derive(Debug, Clone, PartialEq)]
pub enum Driver {
    /// `libcuda.so.1` could not be loaded.
    Missing(String),
    /// Loaded, but `cuInit` failed (no device, driver/kernel-module mismatch, …).
    Unusable {
        /// The CUDA level the driver reports (`cuDriverGetVersion`), when it answers.
        cuda_level: Option<(u32, u32)>,
        /// What failed.
        error: String,
    },
    /// Loaded and initialised.
    Ready {
        /// The highest CUDA version the driver supports.
        cuda_level: (u32, u32),
        /// Its GPUs.
        gpus: Vec<Gpu>,
    },
}

/// The host probe: the driver and which of the CUDA libraries load.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    /// The driver API's answer.
    pub driver: Driver,
    /// `(SONAME, loads)`.
    pub libraries: Vec<(&'static str, bool)>,
}

/// What the binary was built for.
#[derive(Debug, Clone, PartialEq)]
pub struct Build {
    /// Whether the CUDA backend is compiled in.
    pub cuda: bool,
    /// `(major, minor)` of the CUDA toolkit that built it, when known.
    pub cuda_version: Option<(u32, u32)>,
    /// Compute capabilities of its kernels, e.g. `[(9, 0)]`.
    pub capabilities: Vec<(u32, u32)>,
}

impl Build {
    /// This binary.
    pub fn current() -> Self {
        Self {
            cuda: cfg!(feature = "cuda"),
            cuda_version: BUILT_CUDA.and_then(parse_version),
            capabilities: BUILT_CAPS.map(parse_capabilities).unwrap_or_default(),
        }
    }
}

/// `"13.2"` → `(13, 2)`.
fn parse_version(s: &str) -> Option<(u32, u32)> {
    let mut it = s.trim().split('.');
    Some((it.next()?.parse().ok()?, it.next().unwrap_or("0").parse().ok()?))
}

/// `"80,86"` or `"90"` → `[(8, 0), (8, 6)]`.
fn parse_capabilities(s: &str) -> Vec<(u32, u32)> {
    s.split([',', ' ', ';']).filter_map(|c| c.trim().parse::<u32>().ok()).map(|c| (c / 10, c % 10)).collect()
}

/// Probes the host. Never panics; a host without NVIDIA software gives [`Driver::Missing`].
pub fn probe_host() -> Host {
    let libraries = CUDA_LIBRARIES.iter().map(|&name| (name, library_loads(name))).collect();
    Host { driver: probe_driver(), libraries }
}

// The driver probe is FFI by nature: loading a library and calling the driver API's C functions.
#[allow(unsafe_code)]
fn library_loads(name: &str) -> bool {
    // SAFETY: loading runs the library's initialisers; these are NVIDIA's CUDA libraries (or nothing), which the
    // CUDA build loads at start-up anyway.
    unsafe { libloading::Library::new(name) }.is_ok()
}

type CuInit = unsafe extern "C" fn(c_uint) -> c_int;
type CuIntOut = unsafe extern "C" fn(*mut c_int) -> c_int;
type CuDeviceGet = unsafe extern "C" fn(*mut c_int, c_int) -> c_int;
type CuDeviceGetName = unsafe extern "C" fn(*mut c_char, c_int, c_int) -> c_int;
type CuDeviceGetAttribute = unsafe extern "C" fn(*mut c_int, c_int, c_int) -> c_int;
type CuDeviceTotalMem = unsafe extern "C" fn(*mut usize, c_int) -> c_int;

#[allow(unsafe_code)]
fn probe_driver() -> Driver {
    // SAFETY: as in `library_loads`; the symbols below are the driver API's documented C signatures.
    let lib = match unsafe { libloading::Library::new("libcuda.so.1") } {
        Ok(lib) => lib,
        Err(e) => {
            let cause = std::error::Error::source(&e).map(|s| format!(": {s}")).unwrap_or_default();
            return Driver::Missing(format!("{e}{cause}"));
        }
    };
    // SAFETY: every call passes valid out-pointers and the argument types of the driver API's declarations.
    unsafe {
        let version = lib.get::<CuIntOut>(b"cuDriverGetVersion\0").ok().and_then(|f| {
            let mut v: c_int = 0;
            let ok = f(&mut v) == 0;
            let v = v.max(0) as u32;
            ok.then_some((v / 1000, (v % 1000) / 10))
        });
        let init = match lib.get::<CuInit>(b"cuInit\0") {
            Ok(f) => f(0),
            Err(e) => return Driver::Unusable { cuda_level: version, error: e.to_string() },
        };
        if init != 0 {
            let error = format!("cuInit returned CUresult {init}{}", cu_result_hint(init));
            return Driver::Unusable { cuda_level: version, error };
        }
        let (Ok(count_fn), Ok(get), Ok(name_fn), Ok(attr)) = (
            lib.get::<CuIntOut>(b"cuDeviceGetCount\0"),
            lib.get::<CuDeviceGet>(b"cuDeviceGet\0"),
            lib.get::<CuDeviceGetName>(b"cuDeviceGetName\0"),
            lib.get::<CuDeviceGetAttribute>(b"cuDeviceGetAttribute\0"),
        ) else {
            return Driver::Unusable { cuda_level: version, error: "driver lacks device queries".into() };
        };
        let total_mem = lib.get::<CuDeviceTotalMem>(b"cuDeviceTotalMem_v2\0").ok();
        let mut count: c_int = 0;
        if count_fn(&mut count) != 0 {
            count = 0;
        }
        let mut gpus = Vec::new();
        for index in 0..count.max(0) {
            let mut dev: c_int = 0;
            if get(&mut dev, index) != 0 {
                continue;
            }
            let mut buf = [0 as c_char; 256];
            let name = if name_fn(buf.as_mut_ptr(), buf.len() as c_int, dev) == 0 {
                std::ffi::CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
            } else {
                "NVIDIA GPU".into()
            };
            let (mut major, mut minor): (c_int, c_int) = (0, 0);
            attr(&mut major, ATTR_CC_MAJOR, dev);
            attr(&mut minor, ATTR_CC_MINOR, dev);
            let memory_bytes = total_mem.as_ref().and_then(|f| {
                let mut bytes: usize = 0;
                (f(&mut bytes, dev) == 0).then_some(bytes as u64)
            });
            gpus.push(Gpu { index: index as usize, name, capability: (major as u32, minor as u32), memory_bytes });
        }
        Driver::Ready { cuda_level: version.unwrap_or((0, 0)), gpus }
    }
}

/// A few `CUresult`s people meet when a driver does not fit.
fn cu_result_hint(code: c_int) -> &'static str {
    match code {
        100 => " (no CUDA-capable device)",
        803 => " (system has an unsupported display driver / CUDA driver combination)",
        804 => " (forward compatibility was attempted on non-supported hardware)",
        999 => " (unknown error: often a driver and kernel module of different versions)",
        _ => "",
    }
}

/// The one-line conclusion: whether this binary can use a GPU here, and if not, what to do.
pub fn verdict(build: &Build, host: &Host) -> String {
    let fmt_cap = |c: (u32, u32)| format!("{}.{}", c.0, c.1);
    let gpus = match &host.driver {
        Driver::Ready { gpus, .. } => gpus.as_slice(),
        _ => &[],
    };
    if !build.cuda {
        return match gpus.first() {
            None => "OK: this CPU build runs here; no usable NVIDIA GPU was found.".into(),
            Some(g) => format!(
                "Runs on the CPU only: this build has no CUDA. For {} (compute {}) use a CUDA build (scripts/build-cuda.sh).",
                g.name,
                fmt_cap(g.capability)
            ),
        };
    }
    let need_major = build.cuda_version.map(|v| v.0);
    match &host.driver {
        Driver::Missing(_) => {
            return "Runs on the CPU here: no NVIDIA driver (libcuda.so.1) on this host; install the NVIDIA driver to use a GPU.".into();
        }
        Driver::Unusable { cuda_level, error } => {
            let level = cuda_level.map(|l| format!(" (driver CUDA level {})", fmt_cap(l))).unwrap_or_default();
            return format!("Runs on the CPU here: the NVIDIA driver{level} cannot be used: {error}.");
        }
        Driver::Ready { cuda_level, .. } => {
            if let Some(major) = need_major
                && cuda_level.0 < major
            {
                return format!(
                    "Runs on the CPU here: the driver supports CUDA {}, this binary was built with CUDA {} and needs a driver for CUDA {major}.0 or newer. Update the NVIDIA driver, or use a build made with a CUDA {}.x toolkit.",
                    fmt_cap(*cuda_level),
                    build.cuda_version.map(fmt_cap).unwrap_or_default(),
                    cuda_level.0
                );
            }
        }
    }
    let missing: Vec<&str> = host.libraries.iter().filter(|(_, ok)| !ok).map(|(n, _)| *n).collect();
    if !missing.is_empty() {
        return format!(
            "Runs on the CPU here: missing CUDA libraries {} (install the CUDA runtime, cuBLAS and cuRAND of this build's CUDA version, or put them on LD_LIBRARY_PATH).",
            missing.join(", ")
        );
    }
    let Some(g) = gpus.first() else {
        return "Runs on the CPU here: the driver reports no GPU.".into();
    };
    let lowest = build.capabilities.iter().copied().min();
    match lowest {
        Some(cap) if cap > g.capability => format!(
            "Runs on the CPU here: {} has compute capability {}, this build's kernels need {} or newer; rebuild with CUDA_COMPUTE_CAP={}{}.",
            g.name,
            fmt_cap(g.capability),
            fmt_cap(cap),
            g.capability.0,
            g.capability.1
        ),
        _ => format!("OK: this binary can run on cuda:{} ({}, compute {}).", g.index, g.name, fmt_cap(g.capability)),
    }
}

/// The whole report as printed.
pub fn report(build: &Build, host: &Host) -> String {
    let fmt_cap = |c: &(u32, u32)| format!("{}.{}", c.0, c.1);
    let mut s = String::new();
    let _ = writeln!(s, "sf3d {} doctor", env!("CARGO_PKG_VERSION"));
    if build.cuda {
        let caps = build.capabilities.iter().map(fmt_cap).collect::<Vec<_>>().join(", ");
        let _ = writeln!(
            s,
            "binary:    CUDA build, toolkit {}, kernels for compute capability {} (PTX, compiled by the driver for newer GPUs)",
            build.cuda_version.map(|v| format!("{}.{}", v.0, v.1)).unwrap_or_else(|| "unknown".into()),
            if caps.is_empty() { "unknown".into() } else { caps }
        );
    } else {
        let _ = writeln!(s, "binary:    CPU build (no CUDA)");
    }
    match &host.driver {
        Driver::Missing(e) => {
            let _ = writeln!(s, "driver:    none (libcuda.so.1 not loadable: {e})");
        }
        Driver::Unusable { cuda_level, error } => {
            let level =
                cuda_level.map(|l| format!("CUDA level {}.{}", l.0, l.1)).unwrap_or_else(|| "version unknown".into());
            let _ = writeln!(s, "driver:    present ({level}) but unusable: {error}");
        }
        Driver::Ready { cuda_level, gpus } => {
            let _ = writeln!(s, "driver:    CUDA level {}.{}, {} GPU(s)", cuda_level.0, cuda_level.1, gpus.len());
            for g in gpus {
                let mem =
                    g.memory_bytes.map(|b| format!(", {:.1} GiB", b as f64 / (1u64 << 30) as f64)).unwrap_or_default();
                let _ = writeln!(s, "  cuda:{}    {} (compute {}{mem})", g.index, g.name, fmt_cap(&g.capability));
            }
        }
    }
    let libs: Vec<String> =
        host.libraries.iter().map(|(n, ok)| format!("{n} {}", if *ok { "ok" } else { "missing" })).collect();
    let _ = writeln!(s, "libraries: {}", libs.join(", "));
    let _ = write!(s, "verdict:   {}", verdict(build, host));
    s
}

/// Whether [`verdict`] says a GPU can be used.
pub fn gpu_usable(build: &Build, host: &Host) -> bool {
    verdict(build, host).starts_with("OK: this binary can run on cuda:")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cuda_build(version: (u32, u32), caps: &[(u32, u32)]) -> Build {
        Build { cuda: true, cuda_version: Some(version), capabilities: caps.to_vec() }
    }

    fn host(level: (u32, u32), capability: (u32, u32), libs_ok: bool) -> Host {
        Host {
            driver: Driver::Ready {
                cuda_level: level,
                gpus: vec![Gpu { index: 0, name: "Test GPU".into(), capability, memory_bytes: Some(48 << 30) }],
            },
            libraries: CUDA_LIBRARIES.iter().map(|&n| (n, libs_ok)).collect(),
        }
    }

    #[test]
    fn parses_build_facts() {
        assert_eq!(parse_version("13.2"), Some((13, 2)));
        assert_eq!(parse_version("12"), Some((12, 0)));
        assert_eq!(parse_version("x"), None);
        assert_eq!(parse_capabilities("80,86, 89;90"), vec![(8, 0), (8, 6), (8, 9), (9, 0)]);
    }

    /// The lab's case: an RTX 6000 Ada (8.9) whose driver reports CUDA 11.8, a CUDA 13.2 build.
    #[test]
    fn old_driver_gets_the_cpu_and_what_to_install() {
        let v = verdict(&cuda_build((13, 2), &[(8, 0)]), &host((11, 8), (8, 9), true));
        assert!(v.starts_with("Runs on the CPU here"), "{v}");
        assert!(v.contains("supports CUDA 11.8") && v.contains("CUDA 13.0 or newer"), "{v}");
        assert!(!gpu_usable(&cuda_build((13, 2), &[(8, 0)]), &host((11, 8), (8, 9), true)));
    }

    /// PTX for 8.0 runs on 8.9 (the driver compiles it); PTX for 9.0 does not run on 8.9.
    #[test]
    fn compute_capability_must_not_exceed_the_gpu() {
        let ok = verdict(&cuda_build((13, 2), &[(8, 0)]), &host((13, 2), (8, 9), true));
        assert!(ok.starts_with("OK: this binary can run on cuda:0"), "{ok}");
        let too_new = verdict(&cuda_build((13, 2), &[(9, 0)]), &host((13, 2), (8, 9), true));
        assert!(too_new.contains("CUDA_COMPUTE_CAP=89"), "{too_new}");
    }

    #[test]
    fn missing_libraries_are_named() {
        let v = verdict(&cuda_build((13, 2), &[(9, 0)]), &host((13, 2), (9, 0), false));
        assert!(v.contains("libcublas.so.13"), "{v}");
    }

    #[test]
    fn cpu_build_and_hosts_without_a_driver() {
        let cpu = Build { cuda: false, cuda_version: None, capabilities: Vec::new() };
        let none = Host { driver: Driver::Missing("not found".into()), libraries: Vec::new() };
        assert!(verdict(&cpu, &none).starts_with("OK: this CPU build runs here"));
        assert!(verdict(&cpu, &host((13, 2), (9, 0), true)).contains("use a CUDA build"));
        assert!(verdict(&cuda_build((13, 2), &[(9, 0)]), &none).contains("no NVIDIA driver"));
        let report = report(&cpu, &none);
        for line in ["binary:", "driver:", "libraries:", "verdict:"] {
            assert!(report.contains(line), "{report}");
        }
    }

    /// The probe on this machine never panics, whatever it finds.
    #[test]
    fn probing_this_host_works() {
        let h = probe_host();
        assert_eq!(h.libraries.len(), CUDA_LIBRARIES.len());
        let _ = report(&Build::current(), &h);
    }
}
