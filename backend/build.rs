//! Rebuilds when the facts `sf3d doctor` records about a CUDA build change (set by `scripts/build-cuda.sh`).

fn main() {
    println!("cargo:rerun-if-env-changed=SF3D_BUILD_CUDA_VERSION");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
}
