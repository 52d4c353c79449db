//! The **plaintext baseline** of `sealroom bench`: what secure aggregation
//! replaces, measured so the bench can report its overhead. Clients send
//! their f32 vectors *in the clear* to one aggregator, which sums them.
//!
//! It exists only here, inside the benchmark tool (DESIGN.md §1: no sealroom
//! node aggregates plaintext). It uses the same transport as the nodes —
//! tonic gRPC over mutual TLS 1.3 with the federation's certificates, the
//! server side through [`sealroom_node::tls::incoming`] like every node — and
//! the same framing: an encoded message streamed in chunks of
//! [`sealroom_node::grpc::CHUNK_BYTES`]. The aggregator uses the
//! coordinator's certificate, each baseline client its client's.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use prost::Message as _;
use sealroom_node::grpc::{self as node_grpc, MAX_MESSAGE_BYTES};
use sealroom_node::metrics::Metrics;
use sealroom_node::shutdown::{self, Shutdown, ShutdownTrigger};
use sealroom_node::tasks::synthetic_vector;
use sealroom_node::tls::{self, TlsMaterial};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_stream::StreamExt as _;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

/// Generated from `crates/sealroom/proto/baseline.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/sealroom.bench.baseline.v1.rs"));
}

use pb::baseline_aggregator_client::BaselineAggregatorClient;
use pb::baseline_aggregator_server::{BaselineAggregator, BaselineAggregatorServer};
use pb::{Ack, Announce, BaselineUpload, RoundRequest, SumChunk, UploadChunk, WatchRequest};

/// The most the transport probe's sink takes in one call.
const SINK_LIMIT: u64 = 1 << 30;

/// A baseline client's upload in one round.
#[derive(Clone, Copy, Debug)]
pub struct Uploaded {
    /// Round id.
    pub round_id: u64,
    /// Bytes of the encoded upload message (what the secure side counts too).
    pub bytes: usize,
}

/// The running baseline: an aggregator and its clients.
pub struct Baseline {
    endpoint: String,
    server_id: sealroom_protocol::PartyId,
    admin: TlsMaterial,
    trigger: ShutdownTrigger,
    /// Every client's uploads, as they complete.
    pub uploads: mpsc::UnboundedReceiver<Uploaded>,
}

impl std::fmt::Debug for Baseline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Baseline")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl Baseline {
    /// Starts the aggregator on a free loopback port with `server` (the
    /// coordinator's TLS material) and one baseline client per entry of
    /// `clients` (name, TLS material); `admin` is the identity the bench
    /// driver uses to start rounds. Values are drawn like the synthetic
    /// task's, within ±`clip`/2. With `relays`, the clients and the driver
    /// reach the aggregator through a latency relay, as the secure side's
    /// parties reach its nodes.
    pub async fn start(
        server: &TlsMaterial,
        admin: TlsMaterial,
        clients: Vec<(String, TlsMaterial)>,
        clip: f64,
        relays: Option<&super::relay::Relays>,
    ) -> Result<Baseline> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding the baseline aggregator")?;
        let port = match relays {
            Some(relays) => relays.add_any(listener.local_addr()?).await?,
            None => listener.local_addr()?.port(),
        };
        let endpoint = format!("127.0.0.1:{port}");
        let server_id = server.id();
        let (trigger, shutdown) = shutdown::channel();
        let (announce, _) = broadcast::channel(16);
        let service = Aggregator {
            state: Arc::new(Mutex::new(None)),
            announce,
            shutdown: shutdown.clone(),
        };
        // The same server path as every node: only the bench's own
        // identities complete the handshake.
        let registry = tls::Registry::default();
        registry.insert(admin.id(), sealroom_protocol::Role::Admin);
        for (_, material) in &clients {
            registry.insert(material.id(), sealroom_protocol::Role::Client);
        }
        let metrics = Metrics::new();
        let incoming = tls::incoming(
            listener,
            tls::server_config(server, registry.clone(), metrics.clone())?,
            registry,
            metrics,
            shutdown.clone(),
        );
        let server_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let served = tls::server_builder()
                .add_service(
                    BaselineAggregatorServer::new(service)
                        .max_decoding_message_size(MAX_MESSAGE_BYTES)
                        .max_encoding_message_size(MAX_MESSAGE_BYTES),
                )
                .serve_with_incoming_shutdown(incoming, server_shutdown.wait())
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "baseline aggregator stopped");
            }
        });
        let (tx, uploads) = mpsc::unbounded_channel();
        let (ready_tx, mut ready_rx) = mpsc::channel(clients.len().max(1));
        let n = clients.len();
        for (index, (name, material)) in clients.into_iter().enumerate() {
            let channel = tls::pinned_channel(
                &material,
                &endpoint,
                tls::ServerPin::Certificates(vec![server_id]),
            )?;
            let client = BaselineClient {
                index: index as u32,
                name,
                clip,
                channel,
                uploads: tx.clone(),
            };
            let shutdown = shutdown.clone();
            let ready = ready_tx.clone();
            tokio::spawn(async move { client.run(shutdown, ready).await });
        }
        // Every client is watching before the first round starts.
        for _ in 0..n {
            tokio::time::timeout(Duration::from_secs(20), ready_rx.recv())
                .await
                .map_err(|_| anyhow!("baseline clients did not connect within 20 s"))?;
        }
        Ok(Baseline {
            endpoint,
            server_id,
            admin,
            trigger,
            uploads,
        })
    }

    /// A channel for the bench driver (kept and reused across rounds, as the
    /// secure side's admin channel is made once per round request).
    pub fn driver(&self) -> Result<BaselineAggregatorClient<Channel>> {
        let channel = tls::pinned_channel(
            &self.admin,
            &self.endpoint,
            tls::ServerPin::Certificates(vec![self.server_id]),
        )?;
        Ok(BaselineAggregatorClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    /// Runs one round: every client sends its vector; returns the f32 sum.
    pub async fn round(
        driver: &mut BaselineAggregatorClient<Channel>,
        round_id: u64,
        vector_length: usize,
        clients: usize,
    ) -> Result<Vec<f32>> {
        let mut request = Request::new(RoundRequest {
            round_id,
            vector_length: vector_length as u64,
            clients: clients as u32,
        });
        request.set_timeout(Duration::from_secs(120));
        let mut stream = driver
            .round(request)
            .await
            .map_err(|s| anyhow!("baseline round {round_id}: {}", s.message()))?
            .into_inner();
        let mut bytes = Vec::with_capacity(vector_length * 4);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|s| anyhow!("baseline round {round_id}: {}", s.message()))?;
            node_grpc::append(&mut bytes, &chunk.data, vector_length * 4)
                .map_err(|s| anyhow!("baseline round {round_id}: {}", s.message()))?;
        }
        decode_f32(&bytes, vector_length)
            .ok_or_else(|| anyhow!("baseline round {round_id}: the sum has the wrong length"))
    }

    /// One transfer of `bytes` over the driver's connection (the same
    /// gRPC/mutual-TLS stack, the same chunking as an upload), counted and
    /// discarded by the aggregator: how long it took.
    pub async fn transfer(
        driver: &mut BaselineAggregatorClient<Channel>,
        bytes: usize,
    ) -> Result<Duration> {
        let chunk = vec![0x5a_u8; node_grpc::CHUNK_BYTES];
        let chunks = bytes.div_ceil(node_grpc::CHUNK_BYTES);
        let last = bytes - (chunks.saturating_sub(1)) * node_grpc::CHUNK_BYTES;
        let stream = tokio_stream::iter((0..chunks).map(move |i| UploadChunk {
            data: if i + 1 == chunks {
                chunk[..last].to_vec()
            } else {
                chunk.clone()
            },
        }));
        let started = std::time::Instant::now();
        let ack = driver
            .sink(Request::new(stream))
            .await
            .map_err(|s| anyhow!("transport probe: {}", s.message()))?
            .into_inner();
        let took = started.elapsed();
        if ack.bytes != bytes as u64 {
            return Err(anyhow!(
                "transport probe: the aggregator counted {} of {bytes} bytes",
                ack.bytes
            ));
        }
        Ok(took)
    }

    /// Stops the aggregator and the clients.
    pub fn stop(self) {
        self.trigger.trigger();
    }
}

/// Packs f32 values little-endian.
pub fn encode_f32(values: impl IntoIterator<Item = f32>) -> Vec<u8> {
    values.into_iter().flat_map(f32::to_le_bytes).collect()
}

/// Unpacks exactly `len` little-endian f32 values.
pub fn decode_f32(bytes: &[u8], len: usize) -> Option<Vec<f32>> {
    if bytes.len() != len.checked_mul(4)? {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// Adds little-endian f32 values into `acc` (lengths already checked).
fn add_f32_le(acc: &mut [f32], bytes: &[u8]) {
    for (a, c) in acc.iter_mut().zip(bytes.chunks_exact(4)) {
        *a += f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
}

struct ActiveRound {
    round_id: u64,
    vector_length: usize,
    expected: usize,
    received: Vec<bool>,
    sum: Vec<f32>,
    done: Option<oneshot::Sender<Vec<f32>>>,
}

struct Aggregator {
    state: Arc<Mutex<Option<ActiveRound>>>,
    announce: broadcast::Sender<Announce>,
    shutdown: Shutdown,
}

impl Aggregator {
    fn limit(&self) -> usize {
        let state = self.state.lock().expect("baseline state lock");
        state.as_ref().map_or(1024, |r| r.vector_length * 4 + 64)
    }
}

#[tonic::async_trait]
impl BaselineAggregator for Aggregator {
    type WatchStream = tokio_stream::wrappers::ReceiverStream<Result<Announce, Status>>;

    async fn watch(
        &self,
        _request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let mut receiver = self.announce.subscribe();
        let (tx, rx) = mpsc::channel(16);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    n = receiver.recv() => n,
                    () = shutdown.wait() => return,
                };
                match next {
                    Ok(a) => {
                        if tx.send(Ok(a)).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }

    async fn sink(
        &self,
        request: Request<Streaming<UploadChunk>>,
    ) -> Result<Response<Ack>, Status> {
        let mut stream = request.into_inner();
        let mut bytes = 0u64;
        while let Some(chunk) = stream.next().await {
            bytes += chunk?.data.len() as u64;
            if bytes > SINK_LIMIT {
                return Err(Status::resource_exhausted("transport probe over 1 GiB"));
            }
        }
        Ok(Response::new(Ack { bytes }))
    }

    async fn upload(
        &self,
        request: Request<Streaming<UploadChunk>>,
    ) -> Result<Response<Ack>, Status> {
        let limit = self.limit();
        let mut stream = request.into_inner();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            node_grpc::append(&mut bytes, &chunk?.data, limit)?;
        }
        let upload = BaselineUpload::decode(bytes.as_slice())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let mut state = self.state.lock().expect("baseline state lock");
        let round = state
            .as_mut()
            .filter(|r| r.round_id == upload.round_id)
            .ok_or_else(|| Status::failed_precondition("no such baseline round"))?;
        if upload.vector.len() != round.vector_length * 4 {
            return Err(Status::invalid_argument("wrong vector length"));
        }
        let index = upload.client_index as usize;
        match round.received.get_mut(index) {
            Some(seen @ false) => *seen = true,
            _ => return Err(Status::invalid_argument("unknown or repeated client")),
        }
        add_f32_le(&mut round.sum, &upload.vector);
        if round.received.iter().filter(|&&r| r).count() == round.expected
            && let Some(done) = round.done.take()
        {
            let _ = done.send(std::mem::take(&mut round.sum));
        }
        Ok(Response::new(Ack {
            bytes: bytes.len() as u64,
        }))
    }

    type RoundStream = tokio_stream::Iter<std::vec::IntoIter<Result<SumChunk, Status>>>;

    async fn round(
        &self,
        request: Request<RoundRequest>,
    ) -> Result<Response<Self::RoundStream>, Status> {
        let request = request.into_inner();
        let vector_length = usize::try_from(request.vector_length)
            .map_err(|_| Status::invalid_argument("vector too long"))?;
        let (done, finished) = oneshot::channel();
        *self.state.lock().expect("baseline state lock") = Some(ActiveRound {
            round_id: request.round_id,
            vector_length,
            expected: request.clients as usize,
            received: vec![false; request.clients as usize],
            sum: vec![0.0; vector_length],
            done: Some(done),
        });
        let _ = self.announce.send(Announce {
            round_id: request.round_id,
            vector_length: request.vector_length,
        });
        let sum = tokio::time::timeout(Duration::from_secs(110), finished)
            .await
            .map_err(|_| Status::deadline_exceeded("baseline clients did not all send"))?
            .map_err(|_| Status::internal("baseline round dropped"))?;
        let chunks = node_grpc::split(&encode_f32(sum))
            .into_iter()
            .map(|data| Ok(SumChunk { data }))
            .collect::<Vec<_>>();
        Ok(Response::new(tokio_stream::iter(chunks)))
    }
}

struct BaselineClient {
    index: u32,
    name: String,
    clip: f64,
    channel: Channel,
    uploads: mpsc::UnboundedSender<Uploaded>,
}

impl BaselineClient {
    async fn run(self, shutdown: Shutdown, ready: mpsc::Sender<()>) {
        let mut client = BaselineAggregatorClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let mut stream = loop {
            match client.watch(Request::new(WatchRequest {})).await {
                Ok(s) => break s.into_inner(),
                Err(_) if !shutdown.is_triggered() => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(_) => return,
            }
        };
        let _ = ready.send(()).await;
        loop {
            let next = tokio::select! {
                n = stream.next() => n,
                () = shutdown.wait() => return,
            };
            let Some(Ok(announce)) = next else { return };
            match self.send(&mut client, announce).await {
                Ok(bytes) => {
                    let _ = self.uploads.send(Uploaded {
                        round_id: announce.round_id,
                        bytes,
                    });
                }
                Err(e) => tracing::warn!(error = %e, "baseline upload failed"),
            }
        }
    }

    /// Computes this client's vector (as a synthetic-task client does, on a
    /// blocking thread), packs it as f32 and streams it to the aggregator.
    async fn send(
        &self,
        client: &mut BaselineAggregatorClient<Channel>,
        announce: Announce,
    ) -> Result<usize> {
        let (name, clip, index) = (self.name.clone(), self.clip, self.index);
        let encoded = tokio::task::spawn_blocking(move || {
            let values = synthetic_vector(
                &name,
                announce.round_id,
                announce.vector_length as usize,
                clip,
            );
            BaselineUpload {
                round_id: announce.round_id,
                client_index: index,
                vector: encode_f32(values.into_iter().map(|v| v as f32)),
            }
            .encode_to_vec()
        })
        .await?;
        let chunks: Vec<UploadChunk> = node_grpc::split(&encoded)
            .into_iter()
            .map(|data| UploadChunk { data })
            .collect();
        let mut request = Request::new(tokio_stream::iter(chunks));
        request.set_timeout(Duration::from_secs(60));
        client
            .upload(request)
            .await
            .map_err(|s| anyhow!("{}", s.message()))?;
        Ok(encoded.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_packing_round_trips() {
        let values = [1.5f32, -2.25, 0.0, 3.0e7];
        let bytes = encode_f32(values);
        assert_eq!(bytes.len(), 16);
        assert_eq!(decode_f32(&bytes, 4).expect("length"), values);
        assert!(decode_f32(&bytes, 3).is_none());
        let mut acc = vec![1.0f32; 4];
        add_f32_le(&mut acc, &bytes);
        assert_eq!(acc, [2.5, -1.25, 1.0, 3.0e7 + 1.0]);
    }
}
