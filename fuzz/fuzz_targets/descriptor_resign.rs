//! Round descriptors past the signature: the fuzzer mutates the body of a
//! valid descriptor, the coordinator's fixed key signs it again, and
//! `VerifiedDescriptor::verify` checks every field. A descriptor that passes
//! goes to a helper and, if small, to a client whose upload goes to the
//! helper: nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealroom_core::Seed;
use sealroom_fuzz::{START, fixture};
use sealroom_protocol::VerifiedDescriptor;
use sealroom_protocol::action::{Action, Message};
use sealroom_protocol::client::Client;
use sealroom_protocol::helper::Helper;

fuzz_target!(|input: (u8, u8, &[u8])| {
    let (shape, clear, patch) = input;
    let f = fixture(shape);
    let Some(envelope) = f.resigned_descriptor(clear, patch) else {
        return;
    };
    let Ok(descriptor) = VerifiedDescriptor::verify(&envelope, &f.trust) else {
        return;
    };
    let (mut helper, client) = (Helper::new(f.helpers[0].clone()), &f.clients[0]);
    let _ = helper.on_descriptor(START, &envelope);
    if descriptor.vector_len() > 64 {
        return;
    }
    let input = vec![0.5; descriptor.vector_len()];
    let randomness = Seed::from_bytes([1; 32]);
    let participated =
        Client::new(client.clone(), None).participate(START, &envelope, &input, None, &randomness);
    for action in participated.map(|(_, actions)| actions).unwrap_or_default() {
        if let Action::Send {
            to,
            message: Message::Upload(bytes),
        } = action
            && to == f.helpers[0].me
        {
            let _ = helper.on_upload(START, client.me, bytes.expose());
        }
    }
});
