//! Protocol benchmarks (issue #4): filled in with the helper aggregation,
//! reconstruction and client sharing benches.

fn main() {}
