//! The fuzz target's checks, as a library so that the target and `tests/fuzz_seeds.rs`
//! share one copy.

pub mod check;
