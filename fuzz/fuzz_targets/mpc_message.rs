#![no_main]
//! The MPC engine's helper-to-helper message decoder never panics.

use libfuzzer_sys::fuzz_target;
use sealroom_mpc::wire::{Expect, Message, MsgKind};

fuzz_target!(|data: &[u8]| {
    let _ = Message::peek_header(data);
    if let Ok(m) = Message::decode_bounded(data, 1 << 16, 64) {
        assert_eq!(Message::decode_bounded(&m.encode(), 1 << 16, 64), Ok(m));
    }
    for kind in [MsgKind::Open, MsgKind::Hello, MsgKind::CheckOpen] {
        let _ = Message::decode_expecting(
            data,
            &Expect {
                kind,
                elems: 3,
                blobs: 1,
            },
        );
    }
});
