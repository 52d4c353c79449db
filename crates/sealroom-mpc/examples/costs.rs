//! Prints the material and rounds of single operations on n elements:
//! `cargo run --release -p sealroom-mpc --example costs`
#![allow(missing_docs)]

use sealroom_mpc::program::{ProgramBuilder, Secret};

fn row(name: &str, n: usize, f: impl Fn(&mut ProgramBuilder, Secret) -> Secret) {
    let mut p = ProgramBuilder::new(name, 1);
    let a = p.random_values(n);
    let out = f(&mut p, a);
    p.output(out);
    let prog = p.build().expect("builds");
    let needs = prog.needs();
    // Subtract the fixed rounds: hello (1), the output opening (1) and the final check (3).
    println!(
        "{:<28} triples/elem {:>7.1}  bits/elem {:>6.1}  rounds {:>3}",
        name,
        needs.triples as f64 / n as f64,
        (needs.bits as f64 - n as f64 * 0.0) / n as f64,
        prog.rounds() - 5
    );
}

fn main() {
    let n = 64;
    row("mul", n, |p, a| p.mul(a, a));
    for k in [32u32, 64] {
        row(&format!("ltz k={k}"), n, |p, a| p.ltz(a, k));
        row(&format!("eqz k={k}"), n, |p, a| p.eqz(a, k));
        row(&format!("bit_decompose k={k}"), n, |p, a| {
            p.bit_decompose(a, k)
        });
        row(&format!("trunc_pr k={k} m=16"), n, |p, a| {
            p.trunc_pr(a, k, 16)
        });
        row(&format!("trunc k={k} m=16"), n, |p, a| p.trunc(a, k, 16));
    }
    for size in [16usize, 64] {
        let mut p = ProgramBuilder::new("sort", 1);
        let a = p.random_values(size);
        let s = p.sort(a, 32);
        p.output(s);
        let prog = p.build().expect("builds");
        println!(
            "{:<28} triples {:>7}  bits {:>6}  rounds {:>3}",
            format!("sort n={size} k=32"),
            prog.needs().triples,
            prog.needs().bits,
            prog.rounds() - 5
        );
        let mut p = ProgramBuilder::new("median", 1);
        let a = p.random_values(size);
        let s = p.max(a, 32);
        p.output(s);
        let prog = p.build().expect("builds");
        println!(
            "{:<28} triples {:>7}  bits {:>6}  rounds {:>3}",
            format!("max n={size} k=32"),
            prog.needs().triples,
            prog.needs().bits,
            prog.rounds() - 5
        );
    }
}
