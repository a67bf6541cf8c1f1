//! The `--metrics` HTTP server: hyper's HTTP/1 server on the tracer's own tokio runtime,
//! answering `GET /metrics` with the exposition. Listening is set up before any BPF program
//! is loaded, so a bad address or a port in use ends the run at once with a cause and a fix.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;

use super::expose::CONTENT_TYPE as METRICS_TYPE;
use super::Metrics;

/// Connections served at once; a scraper that opens more waits for a free place.
const MAX_CONNECTIONS: usize = 16;
/// A client that has not sent a whole request head by then is disconnected.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Listens on `addr` (non-blocking, for tokio to take over). The error is one line with
/// the cause and what to do.
pub fn listen(addr: SocketAddr) -> Result<std::net::TcpListener, String> {
    let port = addr.port();
    let l = std::net::TcpListener::bind(addr).map_err(|e| {
        let fix = match e.kind() {
            std::io::ErrorKind::AddrInUse => format!(
                "another process listens on port {port} (`ss -ltnp 'sport = :{port}'` names \
                 it): stop it or give another port"
            ),
            std::io::ErrorKind::AddrNotAvailable => format!(
                "{} is not an address of this host: give one of its addresses, 127.0.0.1 or \
                 0.0.0.0",
                addr.ip()
            ),
            std::io::ErrorKind::PermissionDenied => format!(
                "ports below 1024 need CAP_NET_BIND_SERVICE: give a higher one (arp-trace's \
                 is {})",
                crate::cli::METRICS_PORT
            ),
            _ => "give another ADDR:PORT".into(),
        };
        format!("--metrics {addr}: cannot listen: {e}; {fix}")
    })?;
    l.set_nonblocking(true)
        .map_err(|e| format!("--metrics {addr}: {e}"))?;
    Ok(l)
}

fn response(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

/// `GET /metrics` (and HEAD); `/` points there; anything else is 404 or 405.
fn answer(metrics: &Metrics, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let readable = matches!(*req.method(), Method::GET | Method::HEAD);
    match (path, readable) {
        ("/metrics", true) => match metrics.text() {
            Ok(text) => {
                let mut r = response(StatusCode::OK, text);
                r.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_TYPE));
                r
            }
            Err(e) => response(StatusCode::INTERNAL_SERVER_ERROR, e),
        },
        ("/", true) => response(
            StatusCode::OK,
            "arp-trace: Prometheus metrics are at /metrics\n",
        ),
        ("/" | "/metrics", false) => {
            let mut r = response(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            r
        }
        _ => response(StatusCode::NOT_FOUND, "not found: try /metrics\n"),
    }
}

/// Serves until the task is dropped. Each connection is a task of its own on this runtime;
/// a failed accept (out of descriptors) waits a moment instead of spinning.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Metrics) {
    let places = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(place) = places.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                log::warn!("--metrics: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let m = metrics.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let r = answer(&m, &req);
                async move { Ok::<_, Infallible>(r) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                log::debug!("--metrics: connection: {e}");
            }
            drop(place);
        });
    }
}
