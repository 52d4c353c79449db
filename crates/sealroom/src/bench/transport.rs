//! The transport limit the plaintext baseline is held to (issue #17): in
//! the same run, one large transfer over the baseline's own gRPC/mutual-TLS
//! connection ([`super::baseline::Baseline::transfer`]) and, for reference,
//! raw loopback TCP with no TLS and no HTTP/2.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Bytes per transfer of the probe.
pub const PROBE_BYTES: usize = 64 << 20;

/// What the probe measured.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Transport {
    /// Bytes per transfer.
    pub bytes: usize,
    /// Raw loopback TCP, best of three, bytes/s.
    pub raw_tcp_bytes_per_s: f64,
    /// One transfer over gRPC with mutual TLS 1.3 (the baseline's stack),
    /// best of three, bytes/s.
    pub grpc_tls_bytes_per_s: f64,
}

/// Raw loopback TCP: `bytes` written through one connection and read to
/// the end by another task; how long from the connect to the last byte read.
pub async fn raw_tcp(bytes: usize) -> Result<Duration> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("binding the raw TCP probe")?;
    let addr = listener.local_addr()?;
    let reader = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await?;
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0usize;
        loop {
            let n = socket.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(total);
            }
            total += n;
        }
    });
    let started = Instant::now();
    let mut socket = tokio::net::TcpStream::connect(addr).await?;
    let chunk = vec![0x5a_u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        socket.write_all(&chunk[..n]).await?;
        left -= n;
    }
    socket.shutdown().await?;
    let read = reader.await??;
    let took = started.elapsed();
    anyhow::ensure!(read == bytes, "raw TCP probe read {read} of {bytes} bytes");
    Ok(took)
}

/// Bytes per second of the fastest of `runs`.
pub fn best_rate(bytes: usize, runs: &[Duration]) -> f64 {
    runs.iter()
        .map(|d| bytes as f64 / d.as_secs_f64().max(1e-9))
        .fold(0.0, f64::max)
}
