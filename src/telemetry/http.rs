//! The operations endpoint: `/metrics` (Prometheus text), `/healthz` (the
//! process is alive) and `/readyz` (partitions assigned and the database
//! answers).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::sink::Database;

/// What `/readyz` asks the processor.
pub trait Readiness: Send + Sync {
    /// Source partitions assigned to this instance now.
    fn partitions_assigned(&self) -> usize;
}

/// What `/readyz` looks at.
pub struct Health {
    /// The processor (the pipeline's live counters).
    pub progress: Arc<dyn Readiness>,
    pub db: Arc<dyn Database>,
}

/// Binds and serves until `shutdown` is cancelled. Returns the bound
/// address (port 0 picks a free one).
pub async fn serve(
    addr: SocketAddr,
    handle: PrometheusHandle,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = listener.accept() => match r { Ok(s) => s, Err(_) => continue },
            };
            let handle = handle.clone();
            let health = health.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let handle = handle.clone();
                    let health = health.clone();
                    async move { Ok::<_, Infallible>(route(req.uri().path(), &handle, &health).await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(bound)
}

async fn route(path: &str, handle: &PrometheusHandle, health: &Health) -> Response<Full<Bytes>> {
    let reply = |code: StatusCode, ctype: &str, body: String| {
        Response::builder()
            .status(code)
            .header("content-type", ctype)
            .body(Full::new(Bytes::from(body)))
            .expect("static response parts are valid")
    };
    match path {
        "/metrics" => reply(StatusCode::OK, "text/plain; version=0.0.4", handle.render()),
        "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => {
            let assigned = health.progress.partitions_assigned();
            let db = tokio::time::timeout(Duration::from_secs(2), health.db.ping()).await;
            match (assigned, db) {
                (0, _) => reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "not ready: no partitions assigned\n".into(),
                ),
                (_, Ok(Ok(()))) => reply(
                    StatusCode::OK,
                    "text/plain",
                    format!("ready: {assigned} partitions\n"),
                ),
                (_, Ok(Err(e))) => reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("not ready: database: {e}\n"),
                ),
                (_, Err(_)) => reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "not ready: database ping timed out\n".into(),
                ),
            }
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /metrics, /healthz or /readyz\n".into(),
        ),
    }
}
