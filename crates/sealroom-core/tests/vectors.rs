//! Pinned test vectors: PRG output and quantization results that must never
//! change silently (a change breaks wire compatibility between versions).
//!
//! Regenerate deliberately with `SEALROOM_REGENERATE_VECTORS=1 cargo test -p
//! sealroom-core --test vectors`, and say why in the commit.

use std::path::PathBuf;

use sealroom_core::prg::{PrgDomain, Purpose, expand};
use sealroom_core::{Fp, QuantSpec, Ring, Seed};
use serde_json::{Value, json};

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn check_or_regenerate(name: &str, computed: Value) {
    let path = vectors_dir().join(name);
    if std::env::var_os("SEALROOM_REGENERATE_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&computed).expect("serializable") + "\n";
        std::fs::write(&path, text).expect("write vectors");
        return;
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{} is missing ({e}); regenerate deliberately",
            path.display()
        )
    });
    let pinned: Value = serde_json::from_str(&text).expect("vectors are JSON");
    assert_eq!(
        pinned, computed,
        "{name} no longer matches the pinned vectors"
    );
}

fn prg_case(seed_byte: u8, sender: u32, receiver: u32, purpose: Purpose) -> Value {
    let seed = Seed::from_bytes(std::array::from_fn(|i| seed_byte.wrapping_add(i as u8)));
    let context: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(7));
    let domain = PrgDomain {
        context,
        sender,
        receiver,
        purpose,
    };
    let hex32 = |v: &[u32]| v.iter().map(|x| format!("{x:08x}")).collect::<Vec<_>>();
    let hex64 = |v: &[u64]| v.iter().map(|x| format!("{x:016x}")).collect::<Vec<_>>();
    let z32 = expand::<u32>(&seed, &domain, 8);
    let z64 = expand::<u64>(&seed, &domain, 8);
    let fp = expand::<Fp>(&seed, &domain, 8);
    let fp: Vec<u64> = fp.expose().iter().map(|x| x.value()).collect();
    json!({
        "seed": hex::encode(seed.expose_bytes()),
        "context": hex::encode(context),
        "sender": sender,
        "receiver": receiver,
        "purpose": purpose.code(),
        "z2_32": hex32(z32.expose()),
        "z2_64": hex64(z64.expose()),
        "fp61": hex64(&fp),
    })
}

#[test]
fn prg_vectors() {
    let cases = vec![
        prg_case(0, 0, 0, Purpose::AdditiveMask),
        prg_case(1, 3, 1, Purpose::AdditiveMask),
        prg_case(200, 7, 2, Purpose::ShamirShare),
    ];
    check_or_regenerate(
        "prg.json",
        json!({ "algorithm": "blake3-derive-key + aes-128-ctr (128-bit BE counter)", "cases": cases }),
    );
}

#[test]
fn quantization_vectors() {
    let inputs = [
        0.0,
        0.5,
        -0.5,
        1.5,
        2.5,
        -2.5,
        0.123_456_789,
        -3.999_999,
        1e9,
        -1e9,
    ];
    let specs = [(0i8, 1000.0, 16u8), (8, 4.0, 12), (16, 3.0, 24)];
    let cases: Vec<Value> = specs
        .iter()
        .map(|&(scale_bits, clip, bits)| {
            let spec = QuantSpec::new(scale_bits, clip, bits).expect("valid spec");
            let q = spec.quantize(&inputs).expect("finite");
            let embedded: Vec<String> = q
                .values
                .iter()
                .map(|&v| format!("{:016x}", <Fp as Ring>::from_i64(v).value()))
                .collect();
            json!({
                "scale_bits": scale_bits, "clip": clip, "bits": bits,
                "quantized": q.values.clone(), "clipped": q.clipped, "fp61": embedded,
            })
        })
        .collect();
    check_or_regenerate("quant.json", json!({ "inputs": inputs, "cases": cases }));
}
