//! SF3D Studio web UI.
