//! Developer tasks behind `cargo xtask`; the algorithms live in the crates.

pub mod bench;
pub mod golden;
pub mod reproduce;
pub mod screenshot;
