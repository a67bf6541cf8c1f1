//! End-to-end with a real Prometheus (issue 17, host only): Debian's Prometheus scrapes the
//! tracer's `--metrics` every second, and a PromQL query through its HTTP API returns the
//! seed's foreign-sender requests for that namespace and device; `promtool check metrics`
//! accepts the exposition. Prometheus listens on 127.0.0.1 with a throw-away config and data
//! directory, and is killed when the test ends.
//!
//! `cargo xtask test` unpacks Debian's `prometheus` package into target/tools/prometheus
//! (not installed: no service starts); a system-wide prometheus in PATH also does.

use std::io::Write;
use std::net::{SocketAddr, SocketAddrV4, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arp_trace_e2e::*;

#[test]
#[ignore = "entry point for helper processes spawned by the tests, not a test"]
fn helper_process() {
    helper_main();
}

/// `prometheus` or `promtool`: as unpacked by `cargo xtask test`, else from PATH.
fn tool(name: &str) -> PathBuf {
    provisioned_tool(
        "prometheus/usr/bin",
        name,
        "`cargo xtask test` unpacks Debian's prometheus package into target/tools/prometheus \
         (or apt-get install prometheus)",
    )
}

/// A port on 127.0.0.1 nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Prometheus of the test's own, killed on drop (also when the test fails).
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Prometheus {
    fn start(dir: &Scratch, target: SocketAddr) -> Prometheus {
        let config = dir.file("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  \
                 evaluation_interval: 1s\nscrape_configs:\n  - job_name: arp-trace\n    \
                 static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = dir.0.join("prometheus.log");
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={config}"))
            .arg(format!("--storage.tsdb.path={}", dir.file("data")))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start prometheus");
        let p = Prometheus { child, addr, log };
        let end = Instant::now() + scaled(Duration::from_secs(30));
        loop {
            let ready = std::net::TcpStream::connect(addr).is_ok()
                && http_get(addr, "/-/ready").starts_with("HTTP/1.0 200");
            if ready {
                return p;
            }
            assert!(
                Instant::now() < end,
                "prometheus not ready: {}",
                p.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The instant vector a PromQL query returns, through the HTTP API.
    fn query(&self, promql: &str) -> Vec<Value> {
        let mut q = String::new();
        for b in promql.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                q.push(b as char);
            } else {
                q.push_str(&format!("%{b:02X}"));
            }
        }
        let r = http_get(self.addr, &format!("/api/v1/query?query={q}"));
        let body = r.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {r}"));
        assert_eq!(v["status"], "success", "{promql}: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// Queries until the result has one sample of at least `min`; returns its value.
    fn wait_value(&self, promql: &str, min: f64) -> f64 {
        let end = Instant::now() + scaled(Duration::from_secs(30));
        loop {
            let r = self.query(promql);
            if let [one] = r.as_slice() {
                let v: f64 = one["value"][1].as_str().unwrap().parse().unwrap();
                if v >= min {
                    return v;
                }
            }
            assert!(
                Instant::now() < end,
                "{promql} never reached {min}: last {r:?}; prometheus log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn prometheus_scrapes_the_foreign_sender_count_per_namespace_and_device() {
    let dir = Scratch::new("prometheus");
    let seed = Seed::new();
    let srv = &seed.srv;
    let t = Tracer::start(&["--json", "--netns", srv.name(), "--metrics", "127.0.0.1:0"]);
    let target = t.metrics_addr();
    let prom = Prometheus::start(&dir, target);
    assert_eq!(
        prom.wait_value(r#"up{job="arp-trace"}"#, 1.0),
        1.0,
        "the target is up"
    );

    let mut h = Helper::spawn(srv, "at-prom");
    srv.flush_neigh();
    let sport = h.udp(
        SocketAddrV4::new(SRV_ETH5_IP.parse().unwrap(), 0),
        SocketAddrV4::new(C3_IP.parse().unwrap(), 9),
        0,
    );
    t.wait_for(
        |v| is_request(v) && from_ns(v, srv) && v["trigger"]["sport"] == sport,
        EVENT_TIMEOUT,
    );
    let json_count = t
        .matching(|v| {
            is_request(v) && from_ns(v, srv) && v["ifname"] == "eth3" && v["foreign_sender"] == true
        })
        .len() as f64;
    assert!(json_count >= 1.0);

    let ns = srv.name();
    let by_device = format!(
        r#"sum by (netns, device) (arp_trace_foreign_sender_requests_total{{netns="{ns}",device="eth3"}})"#
    );
    assert_eq!(prom.wait_value(&by_device, json_count), json_count);
    let by_sender = format!(
        r#"arp_trace_foreign_sender_requests_total{{netns="{ns}",device="eth3",sender="{SRV_ETH5_IP}"}}"#
    );
    assert_eq!(prom.wait_value(&by_sender, json_count), json_count);
    // The same from the requests counter, by reason.
    let by_reason = format!(
        r#"sum(arp_trace_requests_total{{netns="{ns}",device="eth3",foreign="true",reason="announce0_local_source"}})"#
    );
    assert_eq!(prom.wait_value(&by_reason, json_count), json_count);

    // promtool's own lint of the exposition, as the tracer serves it now.
    let text = scrape(target);
    let mut check = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    drop(prom);
    let (status, _, stderr) = t.stop();
    assert!(status.success(), "{stderr}");
}
