//! The one way a sealroom node serves gRPC: mutual TLS 1.3 from
//! [`crate::tls::incoming`], a per-connection concurrency limit, and the
//! role's state-machine task stopped with the server.

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::service::Routes;

use crate::context::NodeContext;
use crate::shutdown::Shutdown;
use crate::{NodeError, tls};

/// Requests one connection may have in flight.
pub const CONCURRENCY_PER_CONNECTION: usize = 64;

/// Serves `routes` on `listener` until shutdown; then aborts `actor` and
/// reports the first error of either.
pub fn serve(
    ctx: &NodeContext,
    listener: TcpListener,
    routes: Routes,
    actor: JoinHandle<Result<(), NodeError>>,
    shutdown: Shutdown,
) -> Result<JoinHandle<Result<(), NodeError>>, NodeError> {
    let incoming = tls::incoming(
        listener,
        tls::server_config(&ctx.tls)?,
        ctx.metrics.clone(),
        shutdown.clone(),
    );
    Ok(tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            .concurrency_limit_per_connection(CONCURRENCY_PER_CONNECTION)
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, shutdown.wait())
            .await;
        actor.abort();
        if let Ok(Err(e)) = actor.await {
            return Err(e);
        }
        served.map_err(|e| NodeError::Transport(e.to_string()))
    }))
}
