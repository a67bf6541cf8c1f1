//! The aggregate, its caps and expiry, the exposition text and the HTTP answers.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use arp_trace_model::{Announce, ArpOp, FactsChange, Held, RequestFacts};

use super::*;
use crate::sinks::summary::tests::explained;

fn seed_request() -> ArpEvent<'static> {
    let mut ev = explained("203.0.113.10", "198.51.100.20", Some("203.0.113.10"), 1);
    ev.netns = 4026532281;
    ev.facts = Some(RequestFacts {
        arp_announce: Announce {
            all: 0,
            dev: Some(0),
            effective: 0,
        },
        addrs: Vec::new(),
        ns_addrs: Vec::new(),
        route_localnet: None,
        links: None,
        lenders: None,
        lenders_cut: false,
        arp_notify: None,
    });
    ev
}

fn text(m: &Metrics) -> String {
    String::from_utf8(m.text().unwrap()).unwrap()
}

/// The value of the sample line that starts with `series` exactly (name and labels).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

fn fixed() -> Fixed {
    Fixed {
        version: "0.1.0".into(),
        hooks: vec![("transmit".into(), "tp_btf/net_dev_queue".into())],
        solicit_path: "tracepoint".into(),
        started: Some(SystemTime::now()),
        ..Default::default()
    }
}

#[test]
fn a_foreign_request_is_counted_by_namespace_device_reason_and_sender() {
    let m = Metrics::new(fixed());
    let mut sink = m.sink();
    let ev = seed_request();
    for _ in 0..3 {
        sink.record(&Record::Arp(Held::Borrowed(&ev))).unwrap();
    }
    let mut reply = explained("198.51.100.10", "198.51.100.20", None, 2);
    reply.op = ArpOp::Reply;
    sink.record(&Record::Arp(Held::Borrowed(&reply))).unwrap();
    sink.progress(&Counters {
        lost: 7,
        unjoined: 2,
        filtered: 5,
        ..Default::default()
    });
    let t = text(&m);
    let want = [
        (
            r#"arp_trace_requests_total{direction="sent",netns="srv",device="eth3",reason="announce0_local_source",foreign="true"}"#,
            3.0,
        ),
        (
            r#"arp_trace_foreign_sender_requests_total{netns="srv",device="eth3",sender="203.0.113.10"}"#,
            3.0,
        ),
        (
            r#"arp_trace_replies_total{direction="sent",netns="srv",device="eth3"}"#,
            1.0,
        ),
        (r#"arp_trace_arp_announce{netns="srv",device="eth3"}"#, 0.0),
        (r#"arp_trace_events_lost_total{stage="ring_buffer"}"#, 7.0),
        (r#"arp_trace_join_failures_total{stage="neighbour"}"#, 2.0),
        (r#"arp_trace_records_skipped_total{cause="filtered"}"#, 5.0),
        (
            r#"arp_trace_build_info{version="0.1.0",commit="unknown"}"#,
            1.0,
        ),
        (r#"arp_trace_solicit_path_info{path="tracepoint"}"#, 1.0),
        (
            r#"arp_trace_hook_info{role="transmit",hook="tp_btf/net_dev_queue"}"#,
            1.0,
        ),
        (
            r#"arp_trace_metrics_folded_total{metric="arp_trace_requests_total"}"#,
            0.0,
        ),
    ];
    for (series, v) in want {
        assert_eq!(value(&t, series), Some(v), "{series} in\n{t}");
    }
    assert!(t.contains("# TYPE arp_trace_requests_total counter"), "{t}");
    assert!(t.contains("# TYPE arp_trace_arp_announce gauge"), "{t}");
    assert!(value(&t, "process_cpu_seconds_total").is_some(), "{t}");
    assert!(value(&t, "process_resident_memory_bytes").unwrap() > 0.0);
    // Local senders are never labelled with their address.
    let local = explained("198.51.100.10", "198.51.100.20", None, 3);
    sink.record(&Record::Arp(Held::Borrowed(&local))).unwrap();
    assert!(!text(&m).contains("sender=\"198.51.100.10\""));
}

#[test]
fn past_the_cap_updates_fold_into_the_overflow_series() {
    let m = Metrics::new(fixed());
    let mut sink = m.sink();
    let mut ev = seed_request();
    for i in 0..MAX_SENDER_SERIES as u32 + 5 {
        ev.sender_ip = Ipv4Addr::from(0xcb00_7100 + i);
        sink.record(&Record::Arp(Held::Borrowed(&ev))).unwrap();
    }
    let t = text(&m);
    assert_eq!(
        value(
            &t,
            r#"arp_trace_foreign_sender_requests_total{netns="_overflow",device="_overflow",sender="_overflow"}"#
        ),
        Some(5.0),
        "{t}"
    );
    assert_eq!(
        value(
            &t,
            r#"arp_trace_metrics_folded_total{metric="arp_trace_foreign_sender_requests_total"}"#
        ),
        Some(5.0)
    );
    assert_eq!(
        value(
            &t,
            r#"arp_trace_metrics_series{metric="arp_trace_foreign_sender_requests_total"}"#
        ),
        Some(MAX_SENDER_SERIES as f64)
    );
    let senders = t.lines().filter(|l| l.contains("sender=")).count();
    assert_eq!(senders, MAX_SENDER_SERIES + 1);
}

#[test]
fn idle_series_are_dropped_and_free_their_place() {
    let mut st = State::default();
    let t0 = Instant::now();
    st.arp(&seed_request(), t0);
    st.sweep(t0 + SWEEP);
    assert_eq!(st.requests.len(), 1, "not idle yet");
    st.sweep(t0 + IDLE + SWEEP * 2);
    assert_eq!((st.requests.len(), st.foreign.len()), (0, 0));
    assert!(st.namespaces.is_empty());
    assert_eq!(st.netns_label(4026532281), "4026532281");
}

#[test]
fn arp_announce_follows_watched_state_and_changes_to_all() {
    let mut st = State::default();
    let now = Instant::now();
    let mut w = FactsChange::new(7, ChangeKind::Watched);
    w.netns_name = Some("srv".into());
    w.arp_announce = Some(BTreeMap::from([
        ("all".to_string(), 0),
        ("default".to_string(), 0),
        ("eth3".to_string(), 0),
        ("eth5".to_string(), 1),
    ]));
    st.change(&w, now);
    let get = |st: &State, d: &str| {
        st.announce
            .iter()
            .find(|(k, _)| &*k.device == d)
            .map(|(_, v)| v)
    };
    assert_eq!((get(&st, "eth3"), get(&st, "eth5")), (Some(0), Some(1)));
    assert_eq!(get(&st, "default"), None);
    let mut c = FactsChange::new(7, ChangeKind::ArpAnnounce);
    c.conf = Some("all".into());
    c.after = Some(2);
    st.change(&c, now);
    assert_eq!((get(&st, "eth3"), get(&st, "eth5")), (Some(2), Some(2)));
    c.conf = Some("eth3".into());
    c.after = Some(1);
    st.change(&c, now);
    assert_eq!(get(&st, "eth3"), Some(2), "max(all, device)");
    assert_eq!(st.netns_label(7), "srv");
}

#[test]
fn neighbour_failures_count_the_packets_dropped() {
    let mut st = State::default();
    let f = NeighFailed {
        reason: None,
        explanation: None,
        remedy: None,
        link_locals: None,
        time: arp_trace_model::Time(1),
        netns: 9,
        netns_name: None,
        ifindex: 2,
        ifname: "eth3".into(),
        target_ip: Ipv4Addr::new(198, 51, 100, 99).into(),
        attempts: 3,
        dropped: Vec::new(),
        dropped_omitted: 4,
        cause: None,
        nlmsg_pid: None,
        task: None,
    };
    st.failed(&f, Instant::now());
    st.failed(&f, Instant::now());
    assert_eq!(st.failures.iter().next().map(|(_, v)| v), Some(2));
    assert_eq!(st.dropped.iter().next().map(|(_, v)| v), Some(8));
}

#[test]
fn the_process_started_before_now_and_after_boot() {
    let t = process_start().unwrap();
    let now = SystemTime::now();
    assert!(t <= now, "{t:?} {now:?}");
    assert!(
        now.duration_since(t).unwrap() < Duration::from_secs(3600),
        "a test process"
    );
}

#[test]
fn bpf_statistics_are_read_only_from_fdinfo() {
    let t = "pos:\t0\nprog_type:\t26\nrun_time_ns:\t123456\nrun_cnt:\t42\n";
    assert_eq!(expose::fdinfo_field(t, "run_cnt"), Some(42));
    assert_eq!(expose::fdinfo_field(t, "run_time_ns"), Some(123456));
    assert_eq!(expose::fdinfo_field(t, "recursion_misses"), None);
}

/// One HTTP/1.0 request to the server; the whole response.
fn get(addr: SocketAddr, request: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn the_server_answers_metrics_and_refuses_the_rest() {
    let m = Metrics::new(fixed());
    m.sink()
        .record(&Record::Arp(Held::Borrowed(&seed_request())))
        .unwrap();
    let listener = http::listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = std::thread::spawn(move || {
        [
            "GET /metrics HTTP/1.0\r\n\r\n",
            "HEAD /metrics HTTP/1.0\r\n\r\n",
            "POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
            "GET /nothing HTTP/1.0\r\n\r\n",
        ]
        .map(|r| get(addr, r))
    });
    let answers = rt.block_on(async {
        let l = tokio::net::TcpListener::from_std(listener).unwrap();
        let server = tokio::spawn(http::serve(l, m));
        let answers = tokio::task::spawn_blocking(move || client.join().unwrap())
            .await
            .unwrap();
        server.abort();
        answers
    });
    let [ok, head, post, missing] = answers;
    assert!(ok.starts_with("HTTP/1.0 200 OK\r\n"), "{ok}");
    assert!(
        ok.contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{ok}"
    );
    assert!(ok.contains(r#"sender="203.0.113.10"} 1"#), "{ok}");
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n") && !head.contains("arp_trace_"));
    assert!(post.starts_with("HTTP/1.0 405"), "{post}");
    assert!(post.contains("allow: GET, HEAD"), "{post}");
    assert!(missing.starts_with("HTTP/1.0 404"), "{missing}");
}

#[test]
fn a_port_in_use_is_one_line_with_the_fix() {
    let first = http::listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = first.local_addr().unwrap();
    let e = http::listen(addr).unwrap_err();
    assert!(
        e.starts_with(&format!("--metrics {addr}: cannot listen:")),
        "{e}"
    );
    assert!(e.contains("another process listens on port"), "{e}");
    assert!(!e.contains('\n'));
    let e = http::listen("192.0.2.77:9819".parse().unwrap()).unwrap_err();
    assert!(e.contains("is not an address of this host"), "{e}");
}

/// Neighbour discovery has its own family, labelled by op and the ndisc reason; it leaves
/// the ARP request count alone.
#[test]
fn neighbour_solicitations_are_counted_apart_by_op_and_reason() {
    use crate::kernel::ndisc::tests::{ns_frame, raw};
    let m = Metrics::new(fixed());
    let mut sink = m.sink();
    let frame = ns_frame("fe80::3", "ff02::1:ff00:44", "2001:db8:3::44", None);
    let mut nd =
        crate::kernel::ndisc::decode_ndisc(&raw(&frame, &[("fe80::3", 64, 0x20, 0x80)]), 0)
            .unwrap();
    nd.netns_name = Some("srv".into());
    nd.verdict = Some(crate::explain::explain_ndisc(&nd));
    for _ in 0..2 {
        sink.record(&Record::Ndisc(Held::Borrowed(&nd))).unwrap();
    }
    let t = text(&m);
    assert_eq!(
        value(
            &t,
            r#"arp_trace_ndisc_total{direction="sent",netns="srv",device="eth3",op="solicit",reason="ndisc_no_trigger",foreign="false"}"#
        ),
        Some(2.0),
        "{t}"
    );
    assert!(!t.contains("arp_trace_requests_total{"), "{t}");
}
