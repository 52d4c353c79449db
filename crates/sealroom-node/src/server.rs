//! The one way a sealroom node serves gRPC: mutual TLS 1.3 from
//! [`crate::tls::incoming`] (registered certificates only, bounded
//! connections), bounded streams and a deadline on every RPC, and the role's
//! actor stopped with the server — or the server stopped with the actor:
//! when the actor ends with an error, the server shuts down and the error is
//! the node's result, so the process exits and a supervisor restarts it.

use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::service::Routes;

use crate::context::NodeContext;
use crate::shutdown::Shutdown;
use crate::{NodeError, tls};

/// Requests one connection may have in flight.
pub const CONCURRENCY_PER_CONNECTION: usize = 64;
/// HTTP/2 streams one connection may have open.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 128;
/// A connection is closed (gracefully) after this long; clients reconnect.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(30 * 60);

/// The longest any RPC may take: a round's windows, plus a margin (an
/// admin's `StartRound` waits for the whole round; phases of one request
/// each get their own windows, so it is a multiple).
pub fn rpc_deadline(ctx: &NodeContext) -> Duration {
    let round = ctx.federation.upload_window_ms + ctx.federation.aggregation_window_ms;
    Duration::from_millis(round.saturating_mul(3).saturating_add(60_000))
}

/// Serves `routes` on `listener` until shutdown or until `actor` ends; then
/// stops the other and reports the first error of either.
pub fn serve(
    ctx: &NodeContext,
    listener: TcpListener,
    routes: Routes,
    actor: JoinHandle<Result<(), NodeError>>,
    shutdown: Shutdown,
) -> Result<JoinHandle<Result<(), NodeError>>, NodeError> {
    let incoming = tls::incoming(
        listener,
        tls::server_config(&ctx.tls, ctx.registry.clone(), ctx.metrics.clone())?,
        ctx.registry.clone(),
        ctx.metrics.clone(),
        shutdown.clone(),
    );
    let deadline = rpc_deadline(ctx);
    Ok(tokio::spawn(async move {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tls::server_builder()
            .concurrency_limit_per_connection(CONCURRENCY_PER_CONNECTION)
            .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
            .timeout(deadline)
            .max_connection_age(MAX_CONNECTION_AGE)
            .http2_keepalive_interval(Some(tls::KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, async move {
                tokio::select! {
                    () = shutdown.wait() => {}
                    _ = stopped => {}
                }
            });
        tokio::pin!(server);
        let mut actor = actor;
        tokio::select! {
            served = &mut server => {
                actor.abort();
                if let Ok(Err(e)) = actor.await {
                    return Err(e);
                }
                served.map_err(|e| NodeError::Transport(e.to_string()))
            }
            ended = &mut actor => {
                // The actor stopped first: the node cannot go on. Stop serving
                // (never answer "shutting down" while alive) and say why.
                let _ = stop.send(());
                let _ = server.await;
                match ended {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "the node's state machine stopped; the node stops");
                        Err(e)
                    }
                    Err(e) => Err(NodeError::Transport(format!("the node's actor failed: {e}"))),
                }
            }
        }
    }))
}
