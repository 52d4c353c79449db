//! `cargo run --release -p sealroom-mpc --example bench [-- small | triples]`
#![allow(missing_docs)]

use sealroom_mpc::bench::{BenchConfig, run};

fn main() {
    let config = if std::env::args().any(|a| a == "triples") {
        BenchConfig {
            mul_width: 16,
            mul_depth: 1,
            triples: 1 << 19,
            bits: 16,
            comparisons: 4,
            compare_bits: 8,
        }
    } else if std::env::args().any(|a| a == "small") {
        BenchConfig {
            mul_width: 1 << 14,
            mul_depth: 2,
            triples: 1 << 14,
            bits: 1 << 12,
            comparisons: 256,
            compare_bits: 32,
        }
    } else {
        BenchConfig::default()
    };
    println!("{config:?}");
    print!("{}", run(&config));
}
