//! The `sf3d` command-line tool.

fn main() {}
