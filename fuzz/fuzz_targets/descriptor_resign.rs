//! Round descriptors past the signature: the fuzzer mutates the body of a
//! valid descriptor, the coordinator's fixed key signs it again, and
//! `VerifiedDescriptor::verify` checks every field. A descriptor that passes
//! goes (through `Machine::handle`, from the coordinator) to a helper and,
//! if small, to a client whose upload goes to the helper: nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealroom_core::Seed;
use sealroom_fuzz::{COORDINATOR, START, fixture, inbound};
use sealroom_protocol::action::{Action, Message};
use sealroom_protocol::client::Client;
use sealroom_protocol::helper::Helper;
use sealroom_protocol::machine::{ClientInput, Inbound, Input, Participation};
use sealroom_protocol::{Machine, VerifiedDescriptor};

fuzz_target!(|input: (u8, u8, &[u8])| {
    let (shape, clear, patch) = input;
    let f = fixture(shape);
    let Some(envelope) = f.resigned_descriptor(clear, patch) else {
        return;
    };
    let Ok(descriptor) = VerifiedDescriptor::verify(&envelope, &f.trust) else {
        return;
    };
    let (mut helper, config) = (Helper::new(f.helpers[0].clone()), &f.clients[0]);
    let _ = helper.handle(
        START,
        inbound(COORDINATOR, Inbound::Descriptor(envelope.clone())),
    );
    if descriptor.vector_len() > 64 {
        return;
    }
    let mut client = Client::new(config.clone(), None);
    if client
        .handle(START, inbound(COORDINATOR, Inbound::Descriptor(envelope)))
        .is_err()
    {
        return;
    }
    let participation = Participation {
        round: descriptor.round_id(),
        input: Ok(ClientInput::new(vec![0.5; descriptor.vector_len()])),
        randomness: Seed::from_bytes([1; 32]),
    };
    let Ok(step) = client.handle(START, Input::Participate(participation)) else {
        return;
    };
    for action in step.actions {
        if let Action::Send {
            to,
            message: Message::Upload(bytes),
            ..
        } = action
            && to == f.helpers[0].me
        {
            let _ = helper.handle(START, inbound(config.me, Inbound::Upload(bytes)));
        }
    }
});
