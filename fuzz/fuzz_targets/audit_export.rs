//! `sealroom audit cross-check --export FILE` reads lines another machine
//! wrote: any bytes are parsed into an entry or refused with a reason, never
//! a panic, and an entry that parses is then judged by the verifier.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealroom_store::audit::{entry_from_export, verify_chain};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let entries: Vec<_> = text
        .lines()
        .filter_map(|line| entry_from_export(line).ok())
        .collect();
    let _ = verify_chain(&entries);
});
