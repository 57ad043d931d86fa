//! The engine's error type, split by who is at fault: the input (bad image, bad file, bad parameter), a resource
//! limit, or the engine itself (a bug).

use std::path::PathBuf;

/// Result with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the engine can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- bad input -------------------------------------------------------------------------------------
    /// A configuration file is missing a key, has a wrong value, or cannot be parsed.
    #[error("config {file}: {key}: {message}")]
    Config {
        /// The file.
        file: String,
        /// Dotted key path.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A tensor the network needs is absent from the checkpoint.
    #[error("checkpoint has no tensor {key:?}")]
    MissingTensor {
        /// Full checkpoint key.
        key: String,
    },
    /// A checkpoint tensor has another shape than the config implies.
    #[error("checkpoint tensor {key:?} has shape {actual:?}, expected {expected:?}")]
    ShapeMismatch {
        /// Full checkpoint key.
        key: String,
        /// Shape the config implies.
        expected: Vec<usize>,
        /// Shape in the file.
        actual: Vec<usize>,
    },
    /// A data file (tet grid, golden set, cache) is malformed.
    #[error("{path}: {message}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The input image cannot be decoded.
    #[error("unsupported image: {0}")]
    UnsupportedImage(String),
    /// The input image is larger than allowed.
    #[error("image too large: {0}")]
    ImageTooLarge(String),
    /// Nothing is left after background removal.
    #[error("no foreground: {0}")]
    NoForeground(String),
    /// Marching tetrahedra found no surface.
    #[error("no surface found: {0}")]
    NoSurface(String),
    /// A parameter is out of range.
    #[error(transparent)]
    Param(#[from] sf3d_shared::ParamError),
    /// A mesh given to a geometry algorithm violates its preconditions.
    #[error("invalid mesh: {0}")]
    InvalidMesh(String),

    // ---- resources / environment -------------------------------------------------------------------------
    /// File-system error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The job was cancelled.
    #[error("cancelled")]
    Cancelled,

    // ---- the engine itself ---------------------------------------------------------------------------------
    /// A tensor operation failed (usually a bug: shapes the config should have guaranteed).
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    /// An invariant of the engine does not hold: please report it.
    #[error("internal error (please report): {0}")]
    Internal(String),
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// An [`Error::BadFile`] for `path`.
    pub fn bad_file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::BadFile { path: path.into(), message: message.into() }
    }

    /// Whether the caller (not the engine) is at fault.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Error::Config { .. }
                | Error::MissingTensor { .. }
                | Error::ShapeMismatch { .. }
                | Error::BadFile { .. }
                | Error::UnsupportedImage(_)
                | Error::ImageTooLarge(_)
                | Error::NoForeground(_)
                | Error::NoSurface(_)
                | Error::Param(_)
                | Error::InvalidMesh(_)
        )
    }
}
