//! Packed little-endian vectors (`sealroom_core::vector`): decoding, checking
//! and fused decode-and-add never panic, and agree with one another.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealroom_core::vector::{add_le_bytes_assign, check_le, decode_le, encode_le};
use sealroom_core::{Fp, Ring};

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

fuzz_target!(|data: &[u8]| {
    let Some((&len, bytes)) = data.split_first() else {
        return;
    };
    exercise::<u32>(bytes, usize::from(len));
    exercise::<u64>(bytes, usize::from(len));
    exercise::<Fp>(bytes, usize::from(len));
});
