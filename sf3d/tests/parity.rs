//! Parity with the reference implementation on the golden set named by `SF3D_GOLDEN`
//! (default `../shared/golden/tiny-a`): every implemented stage, fed the golden input of that stage and chained.
//! The table with max abs / rel error per tensor is printed (`cargo test -p sf3d --test parity -- --nocapture`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use candle_core::Device;
use sf3d::golden::GoldenSet;
use sf3d::parity::check_golden;

#[test]
fn every_stage_matches_the_golden_set() {
    let dir = GoldenSet::default_dir();
    let report = check_golden(&dir, &Device::Cpu).expect("golden set loads");
    println!("{report}");
    assert!(report.len() > 30, "too few tensors checked: {}", report.len());
    let failures: Vec<String> = report.failures().iter().map(|c| c.to_string()).collect();
    assert!(failures.is_empty(), "stages out of tolerance:\n{}", failures.join("\n"));
}
