//! Support crate of the end-to-end tests (the tests are in main.rs).
