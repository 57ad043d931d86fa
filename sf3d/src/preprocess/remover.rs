//! Which background remover a pipeline runs: the learned U²-Net when the user has rembg's file, the built-in
//! plain-backdrop remover otherwise (docs/engine.md §4.2).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::RgbaImage;

use super::background::remove_background;
use crate::error::Result;
use crate::u2net::U2Net;

/// rembg's file name for U²-Net, looked for by [`BgModel::Auto`].
pub const U2NET_FILE: &str = "u2net.onnx";

/// The user's choice (`--bg-model`, `SF3D_BG_MODEL`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BgModel {
    /// U²-Net from `$U2NET_HOME/u2net.onnx` or `~/.u2net/u2net.onnx` (rembg's places) when present, else the
    /// built-in remover.
    #[default]
    Auto,
    /// Always the built-in remover.
    Builtin,
    /// This U²-Net / U²-NetP ONNX file (an error at start-up when it cannot be loaded).
    File(PathBuf),
}

impl std::str::FromStr for BgModel {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "auto" => Ok(BgModel::Auto),
            "builtin" => Ok(BgModel::Builtin),
            "" => Err("give auto, builtin or the path of a U²-Net ONNX file".into()),
            path => Ok(BgModel::File(PathBuf::from(path))),
        }
    }
}

impl BgModel {
    /// The ONNX file to load, if any: [`BgModel::Auto`] looks in `u2net_home` (`$U2NET_HOME`), then in
    /// `home/.u2net` (`$HOME`), for [`U2NET_FILE`].
    pub fn file(&self, u2net_home: Option<&Path>, home: Option<&Path>) -> Option<PathBuf> {
        match self {
            BgModel::Builtin => None,
            BgModel::File(p) => Some(p.clone()),
            BgModel::Auto => {
                let candidates = [u2net_home.map(Path::to_path_buf), home.map(|h| h.join(".u2net"))];
                candidates.into_iter().flatten().map(|d| d.join(U2NET_FILE)).find(|f| f.is_file())
            }
        }
    }

    /// [`BgModel::file`] with this process's `U2NET_HOME` and `HOME`.
    pub fn file_from_env(&self) -> Option<PathBuf> {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        self.file(var("U2NET_HOME").as_deref(), var("HOME").as_deref())
    }
}

/// The remover a pipeline runs when an image needs its background removed.
#[derive(Debug, Clone, Default)]
pub enum BackgroundRemover {
    /// [`remove_background`]: plain or smoothly graded backdrops.
    #[default]
    Builtin,
    /// rembg's U²-Net or U²-NetP, on the pipeline's device.
    U2Net(Arc<U2Net>),
}

impl BackgroundRemover {
    /// Short name for health and metadata: `builtin`, `u2net` or `u2netp`.
    pub fn name(&self) -> &'static str {
        match self {
            BackgroundRemover::Builtin => "builtin",
            BackgroundRemover::U2Net(n) => n.variant().name(),
        }
    }

    /// What the stage list shows while it runs.
    pub fn label(&self) -> String {
        match self {
            BackgroundRemover::Builtin => "built-in remover".into(),
            BackgroundRemover::U2Net(n) => format!("U²-Net ({})", n.variant().name()),
        }
    }

    /// Removes the background of `img`. Errors: those of [`remove_background`] or [`U2Net::remove_background`].
    pub fn remove(&self, img: &RgbaImage) -> Result<RgbaImage> {
        match self {
            BackgroundRemover::Builtin => remove_background(img),
            BackgroundRemover::U2Net(n) => n.remove_background(img),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        assert_eq!("auto".parse::<BgModel>(), Ok(BgModel::Auto));
        assert_eq!("builtin".parse::<BgModel>(), Ok(BgModel::Builtin));
        assert_eq!("/m/u2netp.onnx".parse::<BgModel>(), Ok(BgModel::File("/m/u2netp.onnx".into())));
        assert!("".parse::<BgModel>().is_err());
    }

    #[test]
    fn auto_looks_in_u2net_home_then_in_the_home_directory() {
        let root = std::env::temp_dir().join(format!("sf3d-bgmodel-{}", std::process::id()));
        let (custom, home) = (root.join("custom"), root.join("home"));
        std::fs::create_dir_all(home.join(".u2net")).unwrap();
        std::fs::create_dir_all(&custom).unwrap();
        assert_eq!(BgModel::Auto.file(Some(&custom), Some(&home)), None, "no file anywhere");
        std::fs::write(home.join(".u2net").join(U2NET_FILE), b"x").unwrap();
        assert_eq!(BgModel::Auto.file(Some(&custom), Some(&home)), Some(home.join(".u2net").join(U2NET_FILE)));
        std::fs::write(custom.join(U2NET_FILE), b"x").unwrap();
        assert_eq!(BgModel::Auto.file(Some(&custom), Some(&home)), Some(custom.join(U2NET_FILE)), "U2NET_HOME first");
        assert_eq!(BgModel::Builtin.file(Some(&custom), Some(&home)), None);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
