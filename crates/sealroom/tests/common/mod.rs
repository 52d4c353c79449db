//! Helpers shared by the process-level tests: the binary, free loopback
//! ports, waiting for a listener.
#![allow(dead_code)]

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

/// The `sealroom` binary under test.
pub fn sealroom() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sealroom"))
}

/// A block of `count` free loopback ports from about `floor` up (each test
/// binary picks its own floor, so concurrent binaries rarely collide).
pub fn free_base_port(floor: u16, count: u16) -> u16 {
    for attempt in 0..200u16 {
        let base = floor + (std::process::id() as u16 % 50) * 300 + attempt * 7;
        if (0..count).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no free port block");
}

/// Waits (up to 20 s) until something listens on `port`.
pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
