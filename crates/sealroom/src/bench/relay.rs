//! Latency relays for `sealroom bench --rtt-ms` (issue #17): a noxious
//! (Toxiproxy) TCP proxy in front of every serving node and of the
//! baseline's aggregator, adding half the round-trip time to each direction.
//! Every connection of either side (clients, helpers, the coordinator, the
//! bench driver) goes through one, so both sides see the same network; TLS
//! runs end to end through the proxy.
//!
//! noxious delays each chunk it reads (up to 32 KiB) by the latency before
//! reading the next, as Toxiproxy does: one connection moves at most
//! 32 KiB per half-RTT (about 1.3 MB/s at 50 ms). Messages up to a few
//! KiB see exactly the added latency; larger transfers are slowed more, on
//! both sides alike (docs/performance.md, "Emulated round-trip time").

use std::net::SocketAddr;
use std::sync::Mutex;

use anyhow::{Context as _, Result, anyhow};
use noxious::proxy::{ProxyConfig, ProxyRunner, Runner, Toxics};
use noxious::signal::Closer;
use noxious::signal::{Close, Stop, Stopper};
use noxious::toxic::{StreamDirection, Toxic, ToxicKind};
use noxious::toxic::{ToxicEvent, ToxicEventResult};

/// What keeps one proxy running: dropping the request sender and calling
/// the stopper ends it.
type Running = (
    bmrng::RequestSender<ToxicEvent, ToxicEventResult>,
    Stopper,
    Close,
    tokio::task::JoinHandle<()>,
);

/// The relays of one bench federation; stopped when dropped.
pub struct Relays {
    rtt_ms: u64,
    running: Mutex<Vec<Running>>,
}

impl Relays {
    /// Relays that add `rtt_ms` per round trip (half each way).
    pub fn new(rtt_ms: u64) -> Relays {
        Relays {
            rtt_ms,
            running: Mutex::new(Vec::new()),
        }
    }

    /// A relay listening on 127.0.0.1:`port`, forwarding to `upstream`.
    pub async fn add(&self, port: u16, upstream: SocketAddr) -> Result<()> {
        let latency = |name: &str, ms: u64, direction| Toxic {
            kind: ToxicKind::Latency {
                latency: ms,
                jitter: 0,
            },
            name: name.to_string(),
            toxicity: 1.0,
            direction,
        };
        let toxics = Toxics {
            upstream: vec![latency("up", self.rtt_ms / 2, StreamDirection::Upstream)],
            downstream: vec![latency(
                "down",
                self.rtt_ms - self.rtt_ms / 2,
                StreamDirection::Downstream,
            )],
        };
        let config = ProxyConfig {
            name: format!("relay-{port}"),
            listen: format!("127.0.0.1:{port}"),
            upstream: upstream.to_string(),
            enabled: true,
            rand_seed: None,
        };
        let (listener, info) =
            ProxyRunner::initialize_proxy::<noxious::socket::TcpListener>(config, toxics)
                .await
                .with_context(|| format!("starting a latency relay on 127.0.0.1:{port}"))?;
        let (events, receiver) = bmrng::channel(1);
        let (stop, stopper) = Stop::new();
        let (close, closer): (Close, Closer) = Close::new();
        let task = tokio::spawn(async move {
            if let Err(e) = ProxyRunner::run_proxy(listener, info, receiver, stop, closer).await {
                tracing::warn!(error = %e, port, "latency relay stopped");
            }
        });
        self.running
            .lock()
            .map_err(|_| anyhow!("relay list poisoned"))?
            .push((events, stopper, close, task));
        Ok(())
    }

    /// A relay on a free loopback port in front of `upstream`; its port.
    pub async fn add_any(&self, upstream: SocketAddr) -> Result<u16> {
        // Below the ephemeral range, as the federation's own ports.
        let port = sealroom_node::local::free_port_block(1)
            .context("finding a free port for a latency relay")?;
        self.add(port, upstream).await?;
        Ok(port)
    }
}

impl Drop for Relays {
    fn drop(&mut self) {
        let running = match self.running.get_mut() {
            Ok(r) => std::mem::take(r),
            Err(poisoned) => std::mem::take(poisoned.into_inner()),
        };
        for (_events, stopper, _close, task) in running {
            stopper.stop();
            task.abort();
        }
    }
}
