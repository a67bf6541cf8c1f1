//! Reading the tracer's `--metrics`: its address from the ready file, one HTTP GET over
//! loopback, and the value of one series in the text exposition.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::scaled;

/// The whole response to `GET path` (HTTP/1.0, so the server closes when done): status line,
/// headers and body.
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(scaled(Duration::from_secs(10))))
        .unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out)
        .unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"));
    out
}

/// The body of `GET /metrics`, after checking for a 200 and the text format's type.
pub fn scrape(addr: SocketAddr) -> String {
    let r = http_get(addr, "/metrics");
    let (head, body) = r.split_once("\r\n\r\n").unwrap_or((&r, ""));
    assert!(head.starts_with("HTTP/1.0 200"), "GET /metrics: {head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "GET /metrics: {head}"
    );
    body.to_string()
}

/// The value of the sample whose name and labels (in the order the tracer writes them) are
/// exactly `series`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().expect("a sample value"))
}

/// Scrapes until `series` reads at least `min`; returns the last exposition.
pub fn wait_for_sample(addr: SocketAddr, series: &str, min: f64, timeout: Duration) -> String {
    let timeout = scaled(timeout);
    let end = Instant::now() + timeout;
    loop {
        let text = scrape(addr);
        if sample(&text, series).is_some_and(|v| v >= min) {
            return text;
        }
        if Instant::now() > end {
            panic!("{series} did not reach {min} within {timeout:?}; last scrape:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
