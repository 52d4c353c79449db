//! Packed little-endian vectors (`sealroom_core::vector`) and bit-packed
//! narrow shares: decoding, checking and fused decode-and-add never panic,
//! agree with one another, and a decoded vector re-encodes to the same bytes
//! (one canonical encoding).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealroom_core::vector::{
    Packing, add_le_bytes_assign, add_packed_assign, check_le, check_packed, decode_le,
    decode_packed, encode_le, encode_packed,
};
use sealroom_core::{Fp, Ring, WrappingRing};

fn exercise<R: Ring>(bytes: &[u8], len: usize) {
    let decoded = decode_le::<R>(bytes, len);
    assert_eq!(
        decoded.as_ref().err(),
        check_le::<R>(bytes, len).err().as_ref()
    );
    let mut acc = vec![R::ZERO; len];
    let added = add_le_bytes_assign(&mut acc, bytes);
    assert_eq!(decoded.as_ref().err(), added.err().as_ref());
    if let Ok(v) = decoded {
        assert_eq!(encode_le(&v), bytes, "canonical encodings round-trip");
        assert_eq!(v, acc, "0 + x = x");
    }
    for huge in [usize::MAX, usize::MAX / R::BYTES + 1] {
        assert!(decode_le::<R>(bytes, huge).is_err() && check_le::<R>(bytes, huge).is_err());
    }
}

fn exercise_packed<R: WrappingRing>(bytes: &[u8], len: usize, packing: Packing) {
    let decoded = decode_packed::<R>(bytes, len, packing);
    assert_eq!(
        decoded.as_ref().err(),
        check_packed::<R>(bytes, len, packing).err().as_ref()
    );
    let mut acc = vec![R::ZERO; len];
    let added = add_packed_assign(&mut acc, bytes, packing);
    assert_eq!(decoded.as_ref().err(), added.err().as_ref());
    if let Ok(v) = decoded {
        assert_eq!(encode_packed(&v, packing), bytes, "canonical encodings round-trip");
        assert_eq!(v, acc, "0 + x = x");
    }
    assert!(decode_packed::<R>(bytes, usize::MAX, packing).is_err());
}

fuzz_target!(|data: &[u8]| {
    let Some((&len, rest)) = data.split_first() else {
        return;
    };
    exercise::<u32>(rest, usize::from(len));
    exercise::<u64>(rest, usize::from(len));
    exercise::<Fp>(rest, usize::from(len));
    if let Some((&bits, bytes)) = rest.split_first() {
        let packing = Packing::Bits(bits % 72);
        exercise_packed::<u32>(bytes, usize::from(len), packing);
        exercise_packed::<u64>(bytes, usize::from(len), packing);
    }
});
