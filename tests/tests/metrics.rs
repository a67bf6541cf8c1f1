//! End-to-end `--metrics` (issue 17): the seed's foreign-sender request shows up in the
//! exposition, counted by namespace, device, reason and sender, while the other outputs go
//! on; `-q` keeps stdout quiet; a bad address is a usage error and a port in use a one-line
//! runtime error. (A real Prometheus scraping it is in prometheus.rs, host only.)

use std::net::SocketAddrV4;
use std::time::Duration;

use arp_trace_e2e::*;

#[test]
#[ignore = "entry point for helper processes spawned by the tests, not a test"]
fn helper_process() {
    helper_main();
}

fn sa(ip: &str, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ip.parse().unwrap(), port)
}

#[test]
fn the_seed_foreign_sender_is_counted_by_namespace_device_and_sender() {
    let seed = Seed::new();
    let srv = &seed.srv;
    let t = Tracer::start(&["--json", "--netns", srv.name(), "--metrics", "127.0.0.1:0"]);
    let addr = t.metrics_addr();
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    assert!(t
        .stderr()
        .contains(&format!("metrics at http://{addr}/metrics")));
    let mut h = Helper::spawn(srv, "at-metrics");
    srv.flush_neigh();
    let sport = h.udp(sa(SRV_ETH5_IP, 0), sa(C3_IP, 9), 0);
    let is_it = |v: &Value| {
        is_request(v) && from_ns(v, srv) && v["trigger"]["sport"] == sport && v["ifname"] == "eth3"
    };
    let evs = t.wait_for(is_it, EVENT_TIMEOUT);
    assert_eq!(evs[0]["sender_ip"], SRV_ETH5_IP);
    assert_eq!(evs[0]["foreign_sender"], true);

    let ns = srv.name();
    let foreign = format!(
        r#"arp_trace_foreign_sender_requests_total{{netns="{ns}",device="eth3",sender="{SRV_ETH5_IP}"}}"#
    );
    let text = wait_for_sample(addr, &foreign, 1.0, EVENT_TIMEOUT);
    // Every request the JSON output shows from that sender on eth3, and no more.
    let json_count = t
        .matching(|v| {
            is_request(v)
                && from_ns(v, srv)
                && v["ifname"] == "eth3"
                && v["sender_ip"] == SRV_ETH5_IP
        })
        .len() as f64;
    assert_eq!(sample(&text, &foreign), Some(json_count), "{text}");
    let requests = format!(
        r#"arp_trace_requests_total{{direction="sent",netns="{ns}",device="eth3",reason="announce0_local_source",foreign="true"}}"#
    );
    assert_eq!(sample(&text, &requests), Some(json_count), "{text}");
    // arp_announce as the request's facts read it: the default, 0.
    let announce = format!(r#"arp_trace_arp_announce{{netns="{ns}",device="eth3"}}"#);
    assert_eq!(sample(&text, &announce), Some(0.0), "{text}");
    // The address local to eth3 is never a label.
    assert!(
        !text.contains(&format!("sender=\"{SRV_ETH3_IP}\"")),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"arp_trace_events_lost_total{stage="ring_buffer"}"#),
        Some(0.0)
    );
    assert!(text.contains("arp_trace_hook_info{role=\"transmit\",hook=\"tp_btf/net_dev_queue\"} 1"));
    assert!(text.contains("arp_trace_build_info{version=\""), "{text}");

    let (status, _, stderr) = t.stop();
    assert!(status.success(), "{stderr}");
}

#[test]
fn quiet_with_metrics_prints_nothing_per_event() {
    let ns = lone("mq");
    let t = Tracer::start(&["-q", "--netns", ns.name(), "--metrics", "127.0.0.1:0"]);
    let addr = t.metrics_addr();
    ns.send_udp(None, udp("198.51.100.99"));
    // Whatever the reason: the first request carries the datagram, the retransmits do not.
    let any = format!(
        r#"arp_trace_requests_total{{direction="sent",netns="{}",device="eth3","#,
        ns.name()
    );
    let end = std::time::Instant::now() + scaled(EVENT_TIMEOUT);
    while !scrape(addr).lines().any(|l| l.starts_with(&any)) {
        assert!(std::time::Instant::now() < end, "no request counted");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(t.lines().is_empty(), "-q printed: {:?}", t.lines());
    // Served at / too, for a human with curl; other paths are not.
    assert!(http_get(addr, "/").starts_with("HTTP/1.0 200"));
    assert!(http_get(addr, "/favicon.ico").starts_with("HTTP/1.0 404"));
    let (status, stdout, stderr) = t.stop();
    assert!(status.success(), "{stderr}");
    // On exit, only the summary (and the counts line on stderr).
    assert!(stdout.starts_with("Summary:"), "{stdout}");
}

#[test]
fn bad_addresses_are_usage_errors_and_a_taken_port_a_one_line_failure() {
    for bad in ["localhost:9819", "127.0.0.1", "127.0.0.1:65536"] {
        let f = arp_trace(&["--metrics", bad]);
        assert_eq!(f.status.code(), Some(2), "{bad}: {f:?}");
        assert!(f.stderr.contains("is not ADDR:PORT"), "{bad}: {f:?}");
        assert!(!f.stderr.contains("panicked"), "{f:?}");
    }
    let f = arp_trace(&["-r", "/dev/null", "--metrics", "127.0.0.1:0"]);
    assert_eq!(f.status.code(), Some(2), "{f:?}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let f = arp_trace(&["--metrics", &format!("127.0.0.1:{port}")]);
    assert_eq!(f.status.code(), Some(1), "{f:?}");
    let lines = f.stderr_lines();
    assert_eq!(lines.len(), 1, "{f:?}");
    assert!(
        lines[0].starts_with(&format!(
            "arp-trace: --metrics 127.0.0.1:{port}: cannot listen"
        )),
        "{f:?}"
    );
    assert!(lines[0].contains("give another port"), "{f:?}");
}
