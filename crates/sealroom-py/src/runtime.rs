//! One tokio runtime for the whole Python process, and the cancellable wait
//! every long operation goes through.

use std::future::Future;
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pyo3::prelude::*;

use crate::errors::{self, Cancelled, Timeout};

/// How often a waiting thread wakes to let Python deliver signals.
const POLL: Duration = Duration::from_millis(50);

/// The shared runtime (two worker threads: the nodes' I/O is light, and
/// heavy work runs on its blocking pool).
pub(crate) fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            sealroom_node::tls::install_crypto_provider();
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("sealroom")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| {
            errors::error::<errors::SealroomError>(
                format!("starting the runtime: {e}"),
                "runtime",
                None,
            )
        })
}

/// Runs `future` on the shared runtime while the calling thread waits
/// without the GIL. Every [`POLL`] it checks Python's signals (Ctrl-C raises
/// `KeyboardInterrupt`, which cancels the operation) and the `timeout`;
/// either aborts the task, dropping its future.
pub(crate) fn wait<T, F>(py: Python<'_>, timeout: Option<f64>, future: F) -> PyResult<T>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let rt = runtime()?;
    let deadline = match timeout {
        Some(t) if t.is_finite() && t > 0.0 => Some(Instant::now() + Duration::from_secs_f64(t)),
        Some(t) => {
            return Err(errors::config(format!(
                "timeout must be a positive number of seconds, not {t}"
            )));
        }
        None => None,
    };
    let (tx, mut rx) = mpsc::channel();
    let task = rt.spawn(async move {
        let _ = tx.send(future.await);
    });
    loop {
        let (received, back) = py.detach(move || {
            let received = rx.recv_timeout(POLL);
            (received, rx)
        });
        rx = back;
        match received {
            Ok(value) => return Ok(value),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(errors::error::<Cancelled>(
                    "the operation ended without a result",
                    "cancelled",
                    None,
                ));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if let Err(signal) = py.check_signals() {
            task.abort();
            return Err(signal);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            task.abort();
            return Err(errors::error::<Timeout>(
                format!(
                    "the operation did not finish within {} s",
                    timeout.unwrap_or_default()
                ),
                "timeout",
                None,
            ));
        }
    }
}
