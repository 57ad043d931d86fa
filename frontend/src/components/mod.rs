//! The UI components, one file per feature. Each reads the shared [`crate::app::Studio`] from the context.

pub mod compare;
pub mod gallery;
pub mod health;
pub mod params;
pub mod progress;
pub mod upload;
pub mod viewer;
