//! End-to-end: traces written by the live tracer (`-w`, `--pcap`) replayed with `-r`,
//! compared with `diff`, read by jq and tshark, cut by SIGKILL, and fed bad input.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::Duration;

use arp_trace_e2e::*;

/// A private 0755 directory for one test's files, removed on drop.
struct Dir(PathBuf);
impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("arp-trace-traces-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        Dir(d)
    }
    fn file(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_string()
    }
}
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Foreign-sender and on-link requests on srv/eth3, and one that fails (neigh_failed).
fn traffic(seed: &Seed) {
    let srv = &seed.srv;
    srv.flush_neigh();
    srv.send_udp(Some(SRV_ETH5_IP.parse().unwrap()), udp(C3_IP));
    sleep(Duration::from_millis(100));
    srv.flush_neigh();
    srv.send_udp(None, udp(C3_IP));
    srv.send_udp(None, udp("198.51.100.99"));
}

fn wait_traffic_json(t: &Tracer, srv: &Netns) {
    t.wait_for(
        |v| v["type"] == "neigh_failed" && from_ns(v, srv),
        EVENT_TIMEOUT,
    );
}

fn assert_clean_failure(f: &Finished, want: &str) {
    assert!(!f.status.success(), "expected failure for {want}: {f:?}");
    let lines = f.stderr_lines();
    assert_eq!(lines.len(), 1, "one line of stderr for {want}: {f:?}");
    assert!(lines[0].contains(want), "want {want:?} in {:?}", lines[0]);
    assert!(!f.stderr.contains("panicked"), "{f:?}");
}

/// The JSON lines of an output that are events, not the header or the summary.
fn event_lines(stdout: &str) -> impl Iterator<Item = &str> {
    stdout
        .lines()
        .filter(|l| !l.starts_with(r#"{"type":"header""#) && !l.contains(r#""type":"summary""#))
}

#[test]
fn replay_prints_what_the_live_run_printed() {
    let seed = Seed::new();
    let srv = &seed.srv;
    let d = Dir::new("replay");
    let (a, pcap, b, c) = (
        d.file("a.jsonl"),
        d.file("a.pcapng"),
        d.file("b.jsonl.zst"),
        d.file("c.jsonl.gz"),
    );
    let ns = srv.name();
    // ARP only: the namespaces' own IPv6 traffic (DAD of link-local addresses) has its test
    // below.
    let tj = Tracer::start(&["--json", "-4", "--netns", ns, "-w", &a, "--pcap", &pcap]);
    let tt = Tracer::start(&["-4", "--netns", ns, "-w", &b]);
    let tq = Tracer::start(&["-4", "-q", "--netns", ns, "-w", &c]);
    traffic(&seed);
    wait_traffic_json(&tj, srv);
    tt.wait_for_line(|l| l.contains("failed after"), EVENT_TIMEOUT);
    sleep(Duration::from_millis(300));
    let (st, live_json, e1) = tj.stop();
    assert!(st.success(), "{e1}");
    let (st, live_text, e2) = tt.stop();
    assert!(st.success(), "{e2}");
    let (st, _, e3) = tq.stop();
    assert!(st.success(), "{e3}");
    assert!(live_json.contains("\"neigh_failed\""), "{live_json}");
    assert!(live_json.contains(&format!("\"sender_ip\":\"{SRV_ETH5_IP}\"")));

    // Byte-identical JSON and identical human lines, plain and compressed.
    let r = arp_trace(&["-r", &a, "--json"]);
    assert!(r.status.success(), "{r:?}");
    assert_eq!(r.stdout, live_json);
    // And the same counts line on exit.
    let counts = |e: &str| e.lines().last().unwrap_or_default().to_string();
    assert_eq!(counts(&r.stderr), counts(&e1));
    let r = arp_trace(&["-r", &b]);
    assert!(r.status.success(), "{r:?}");
    assert_eq!(r.stdout, live_text);
    assert!(r
        .stdout
        .contains(&format!("{ns}/eth3 ARP who-has {C3_IP} tell {SRV_ETH5_IP}")));
    // The -q run saw the same kernel events.
    let r = arp_trace(&["-r", &c, "--json"]);
    // Each tracer converts kernel time with its own clock reading: compare without it.
    let untimed = |s: &str| -> Vec<Value> {
        parse_json_lines(s)
            .into_iter()
            // first/last seen are times too; each run has its own header
            .filter(|v| v["type"] != "summary" && v["type"] != "header")
            .map(|mut v| {
                untime(&mut v);
                v
            })
            .collect()
    };
    let mut x: Vec<String> = untimed(&r.stdout).iter().map(Value::to_string).collect();
    let mut y: Vec<String> = untimed(&live_json).iter().map(Value::to_string).collect();
    x.sort();
    y.sort();
    assert_eq!(x, y);
    // The exit counts come from the trace, lost count from its trailer.
    let live_counts = parse_counts(&e1);
    assert_eq!(parse_counts(&r.stderr), live_counts);

    // Filters work on the trace's names, not this machine's.
    let eth5 = arp_trace(&["-r", &a, "--json", "-i", "eth5"]);
    assert!(
        event_lines(&eth5.stdout).all(|l| l.contains("\"ifname\":\"eth5\"")),
        "{eth5:?}"
    );
    let one = arp_trace(&["-r", &a, "--json", "-c", "1"]);
    assert_eq!(
        one.stdout
            .lines()
            .filter(|l| l.contains("\"op\":\"request\""))
            .count(),
        1
    );
    let q = arp_trace(&["-r", &a, "-q"]);
    // -q: no event lines, only the summary table.
    assert!(
        q.stdout.starts_with("Summary: ") && q.status.success(),
        "{q:?}"
    );
    assert!(!q.stdout.contains(" ARP who-has "), "{q:?}");
    assert_eq!(parse_counts(&q.stderr), live_counts);
    let by_name = arp_trace(&["-r", &a, "--json", "--netns", ns]);
    assert_eq!(by_name.stdout, live_json);
    let inode = srv.inode().to_string();
    let by_inode = arp_trace(&["-r", &a, "--json", "--netns", &inode]);
    assert_eq!(by_inode.stdout, live_json);
    let other = arp_trace(&["-r", &a, "--json", "--netns", "nosuchns"]);
    assert!(
        event_lines(&other.stdout).count() == 0 && other.status.success(),
        "{other:?}"
    );

    // No root needed to replay.
    for f in [&a, &b] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let u = run_unprivileged(&["-r", &b]);
    assert!(u.status.success(), "{u:?}");
    assert_eq!(u.stdout, live_text);

    // jq reads the trace as it is.
    let jq_lines = jq(&["-c", "select(.type!=\"header\" and .type!=\"summary\")", &a]);
    assert_eq!(jq_lines.lines().count(), event_lines(&live_json).count());
    let head = jq(&[
        "-r",
        "select(.type==\"header\") | .format_version, .hooks",
        &a,
    ]);
    assert!(head.starts_with("4\n"), "{head}");
    let trailer = jq(&["-r", "select(.type==\"summary\") | .requests, .lost", &a]);
    assert_eq!(
        trailer,
        format!("{}\n{}\n", live_counts.requests, live_counts.lost)
    );
    // The trailer is the summary the live --json run printed, plus the counts.
    let summary_of = |args: &[&str]| {
        let filter = "select(.type==\"summary\") | del(.events, .replies, .received, .failures, .lost, .filtered, .undecodable, .end_time)";
        jq(&[&["-c", filter], args].concat())
    };
    let live_summary = {
        let f = d.file("live.json");
        std::fs::write(&f, &live_json).unwrap();
        summary_of(&[&f])
    };
    assert!(live_summary.contains("\"rows\":[{"), "{live_summary}");
    assert_eq!(summary_of(&[&a]), live_summary);

    // Wireshark's tshark reads the pcapng: frames, interface names and comments.
    let requests: Vec<Value> = parse_json_lines(&live_json)
        .into_iter()
        .filter(|v| v["type"] == "arp")
        .collect();
    let out = Command::new("tshark")
        .args(["-r", &pcap, "-T", "fields", "-E", "separator=|"])
        .args([
            "-e",
            "frame.interface_name",
            "-e",
            "arp.opcode",
            "-e",
            "arp.src.proto_ipv4",
        ])
        .args(["-e", "arp.dst.proto_ipv4", "-e", "frame.comment"])
        .args(["-e", "frame.packet_flags_direction"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<Vec<&str>> = rows.lines().map(|l| l.split('|').collect()).collect();
    assert_eq!(rows.len(), requests.len(), "{rows:?}");
    for (row, ev) in rows.iter().zip(&requests) {
        assert_eq!(row[0], format!("{ns}/{}", s(ev, "ifname")));
        assert_eq!(row[1], if ev["op"] == "request" { "1" } else { "2" });
        assert_eq!(row[2], s(ev, "sender_ip"));
        assert_eq!(row[3], s(ev, "target_ip"));
        // epb_flags direction 1 inbound, 2 outbound (tshark prints the field as 32-bit hex).
        let dir = if is_received(ev) {
            "0x00000001"
        } else {
            "0x00000002"
        };
        assert_eq!(row.last(), Some(&dir), "{row:?}");
        if is_request(ev) && ev["trigger"].is_object() {
            let t = &ev["trigger"];
            let want = format!("trigger: udp {}:", s(t, "src"));
            assert!(row[4].contains(&want), "{row:?} vs {ev}");
        }
    }
    // The comment carries the explanation too, as the event's verdict has it.
    for (row, ev) in rows.iter().zip(&requests) {
        if let Some(why) = ev["explanation"].as_str() {
            let want = format!("why ({}): {why}", s(ev, "reason"));
            assert!(row[4].contains(&want), "{row:?} vs {ev}");
        }
    }
    assert!(rows.iter().any(|r| r[2] == SRV_ETH5_IP
        && r[4].contains("trigger: udp 203.0.113.10:")
        && r[4].contains(
            "; foreign sender; why (announce0_local_source): eth3 announces 203.0.113.10"
        )));
    // -T json: the raw frame bytes are the event's.
    let out = Command::new("tshark")
        .args(["-r", &pcap, "-T", "json", "-x"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let pkts = v.as_array().unwrap();
    assert_eq!(pkts.len(), requests.len());
    for (p, ev) in pkts.iter().zip(&requests) {
        let raw = p["_source"]["layers"]["frame_raw"][0].as_str().unwrap();
        assert_eq!(raw, s(ev, "frame"));
    }

    // The same pcapng from the replay.
    let pcap2 = d.file("r.pcapng");
    let r = arp_trace(&["-r", &a, "-q", "--pcap", &pcap2]);
    assert!(r.status.success(), "{r:?}");
    assert_eq!(
        std::fs::read(&pcap2).unwrap().len(),
        std::fs::read(&pcap).unwrap().len()
    );
}

/// IPv6: the solicitations and the silent failure replay as the live run printed them, and
/// tshark reads the same frames, each with its explanation.
#[test]
fn neighbour_discovery_replays_and_opens_in_tshark() {
    let (srv, c3, c5) = (Netns::new("s"), Netns::new("c3"), Netns::new("c5"));
    veth6(&srv, "eth3", "2001:db8:3::1", &c3, "eth0", "2001:db8:3::44");
    veth6(&srv, "eth5", "2001:db8:5::1", &c5, "eth0", "2001:db8:5::99");
    let d = Dir::new("ndisc");
    let (a, pcap, b) = (d.file("a.jsonl"), d.file("a.pcapng"), d.file("b.jsonl"));
    let ns = srv.name();
    let tj = Tracer::start(&["--json", "-6", "--netns", ns, "-w", &a, "--pcap", &pcap]);
    let tt = Tracer::start(&["-6", "-v", "--netns", ns, "-w", &b]);
    srv.send_udp6(Some("2001:db8:5::1"), "2001:db8:3::44");
    srv.send_udp6(Some("2001:db8:3::1"), "2001:db8:3::99");
    tj.wait_for(
        |v| v["type"] == "neigh_failed" && v["target_ip"] == "2001:db8:3::99",
        EVENT_TIMEOUT,
    );
    tt.wait_for_line(|l| l.contains("ND 2001:db8:3::99 failed"), EVENT_TIMEOUT);
    sleep(Duration::from_millis(300));
    let (st, live_json, e1) = tj.stop();
    assert!(st.success(), "{e1}");
    let (st, live_text, e2) = tt.stop();
    assert!(st.success(), "{e2}");
    assert!(
        e1.lines()
            .last()
            .unwrap()
            .contains(" neighbour solicitations, "),
        "{e1}"
    );
    let r = arp_trace(&["-r", &a, "--json"]);
    assert!(r.status.success(), "{r:?}");
    assert_eq!(r.stdout, live_json);
    let r = arp_trace(&["-r", &b, "-v"]);
    assert!(r.status.success(), "{r:?}");
    assert_eq!(r.stdout, live_text);
    assert!(
        live_text.contains("ICMP6, neighbor solicitation, who has 2001:db8:3::44"),
        "{live_text}"
    );
    // An older reader's version is refused at the header, not halfway.
    let head = jq(&["-r", "select(.type==\"header\") | .format_version", &a]);
    assert_eq!(head.trim(), "4");

    let nds: Vec<Value> = parse_json_lines(&live_json)
        .into_iter()
        .filter(|v| v["type"] == "ndisc")
        .collect();
    assert!(
        nds.iter()
            .any(|v| v["target_ip"] == "2001:db8:3::44" && v["reason"] == "ndisc_link_local"),
        "{live_json}"
    );
    let out = Command::new("tshark")
        .args(["-r", &pcap, "-T", "fields", "-E", "separator=|"])
        .args(["-e", "frame.interface_name", "-e", "icmpv6.type"])
        .args(["-e", "ipv6.src", "-e", "ipv6.dst", "-e", "frame.comment"])
        .args(["-e", "frame.packet_flags_direction"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<Vec<&str>> = rows.lines().map(|l| l.split('|').collect()).collect();
    assert_eq!(rows.len(), nds.len(), "{rows:?}");
    for (row, ev) in rows.iter().zip(&nds) {
        assert_eq!(row[0], format!("{ns}/{}", s(ev, "ifname")));
        assert_eq!(row[1], if ev["op"] == "solicit" { "135" } else { "136" });
        assert_eq!(row[2], s(ev, "sender_ip"));
        assert_eq!(row[3], s(ev, "dst_ip"));
        let why = format!("why ({}): {}", s(ev, "reason"), s(ev, "explanation"));
        assert!(row[4].contains(&why), "{row:?} vs {ev}");
        assert_eq!(row.last(), Some(&"0x00000002"), "{row:?}");
    }
    // -4 on the same trace: nothing of IPv6 is left.
    let only4 = arp_trace(&["-r", &a, "--json", "-4"]);
    assert_eq!(event_lines(&only4.stdout).count(), 0, "{only4:?}");
}

#[test]
fn sigkill_leaves_a_trace_readable_up_to_the_cut() {
    let seed = Seed::new();
    let srv = &seed.srv;
    let d = Dir::new("kill");
    for name in ["k.jsonl", "k.jsonl.gz", "k.jsonl.zst"] {
        let f = d.file(name);
        let t = Tracer::start(&["--json", "--netns", srv.name(), "-w", &f]);
        srv.flush_neigh();
        srv.send_udp(Some(SRV_ETH5_IP.parse().unwrap()), udp(C3_IP));
        t.wait_for(|v| is_request(v) && from_ns(v, srv), EVENT_TIMEOUT);
        // The trace is flushed in the same batch, just after stdout.
        sleep(Duration::from_millis(300));
        let (st, live, _) = t.stop_with(libc::SIGKILL);
        assert_eq!(describe(&st), "killed by signal 9");
        let r = arp_trace(&["-r", &f, "--json"]);
        assert!(r.status.success(), "{name}: {r:?}");
        // A killed tracer printed no summary; the replay ends with one.
        let (events, summary) = r.stdout.trim_end().rsplit_once('\n').unwrap();
        assert!(summary.contains(r#""type":"summary""#), "{name}: {summary}");
        assert_eq!(format!("{events}\n"), live, "{name}");
        assert!(
            r.stderr.contains("warning:") && r.stderr.contains("cut"),
            "{name}: {}",
            r.stderr
        );
        assert!(
            r.stderr.contains(&f),
            "the warning names the file: {}",
            r.stderr
        );
    }
    // SIGTERM: complete, with trailer, no warning.
    let f = d.file("t.jsonl.zst");
    let t = Tracer::start(&["--json", "--netns", srv.name(), "-w", &f]);
    srv.flush_neigh();
    srv.send_udp(None, udp(C3_IP));
    t.wait_for(|v| is_request(v) && from_ns(v, srv), EVENT_TIMEOUT);
    let (st, live, _) = t.stop_with(libc::SIGTERM);
    assert!(st.success());
    let r = arp_trace(&["-r", &f, "--json"]);
    assert_eq!(r.stdout, live);
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
}

fn sysctl_in(ns: &Netns, setting: &str) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns.name(), "sysctl", "-qw", setting])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Three foreign-source datagrams to c3 (fresh resolution each time) under one tracer.
fn capture_foreign_attempts(seed: &Seed, file: &str) {
    let srv = &seed.srv;
    let t = Tracer::start(&["--json", "--netns", srv.name(), "-w", file]);
    for i in 1..=3 {
        srv.flush_neigh();
        srv.send_udp(Some(SRV_ETH5_IP.parse().unwrap()), udp(C3_IP));
        t.wait_for_n(
            |v| is_request(v) && v["target_ip"] == C3_IP,
            i,
            EVENT_TIMEOUT,
        );
    }
    let (st, _, e) = t.stop();
    assert!(st.success(), "{e}");
}

#[test]
fn diff_shows_the_effect_of_arp_announce() {
    let seed = Seed::new();
    let ns = seed.srv.name().to_string();
    let d = Dir::new("diff");
    let (before, after) = (d.file("before.jsonl"), d.file("after.jsonl.gz"));
    capture_foreign_attempts(&seed, &before);
    sysctl_in(&seed.srv, "net.ipv4.conf.eth3.arp_announce=2");
    capture_foreign_attempts(&seed, &after);

    let r = arp_trace(&["diff", &before, &after]);
    assert_eq!(r.status.code(), Some(1), "{r:?}");
    let verdict =
        format!("verdict: foreign-sender requests on {ns}/eth3: 3 -> 0 after arp_announce 0 -> 2");
    assert!(r.stdout.contains(&verdict), "{}", r.stdout);
    assert!(r
        .stdout
        .contains(&format!("{ns}.interfaces.eth3.arp_announce: 0 -> 2")));

    let r = arp_trace(&["diff", "--json", &before, &after]);
    assert_eq!(r.status.code(), Some(1), "{r:?}");
    let v: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(v["differ"], true);
    let groups = v["groups"].as_array().unwrap();
    let g0 = &groups[0];
    assert_eq!((s(g0, "netns"), s(g0, "ifname")), (ns.as_str(), "eth3"));
    assert_eq!(
        (s(g0, "sender_ip"), s(g0, "change")),
        (SRV_ETH5_IP, "vanished")
    );
    assert_eq!(
        (g0["before"].as_u64(), g0["after"].as_u64(), &g0["foreign"]),
        (Some(3), Some(0), &Value::Bool(true))
    );
    assert!(groups.iter().any(|g| g["sender_ip"] == SRV_ETH3_IP
        && g["change"] == "appeared"
        && g["after"] == 3
        && g["foreign"] == false));

    let same = arp_trace(&["diff", &before, &before]);
    assert_eq!(same.status.code(), Some(0), "{same:?}");
    assert!(
        same.stdout.contains("verdict: no difference"),
        "{}",
        same.stdout
    );
    let bad = arp_trace(&["diff", &before, "/nonexistent/trace"]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    assert_clean_failure(&bad, "/nonexistent/trace: cannot open");
}

#[test]
fn bad_input_fails_with_file_line_and_cause() {
    let d = Dir::new("bad");
    let header = r#"{"type":"header","format_version":1,"hooks":"x","snapshot":{}}"#;
    let ev = r#"{"type":"arp","op":"request","time":"2026-11-28T19:31:02.000000000Z","netns":1,"netns_name":null,"ifindex":2,"ifname":"eth3","sender_ip":"198.51.100.10","sender_mac":"02:00:00:00:00:01","target_ip":"198.51.100.20","target_mac":"00:00:00:00:00:00","unicast":false,"eth_dst":"ff:ff:ff:ff:ff:ff","frame":"00","trigger":null,"neigh_state":null,"attempt":null,"queued":null}"#;
    let cases: Vec<(&str, String, &str)> = vec![
        ("empty", String::new(), "empty.jsonl: empty file"),
        (
            "corrupt",
            format!("{header}\n{ev}\n{{\"type\":\"arp\",\"op\":\n"),
            "corrupt.jsonl line 3: arp record",
        ),
        (
            "unknown",
            format!("{header}\n{{\"type\":\"martian\"}}\n"),
            "unknown.jsonl line 2: unknown record type \"martian\"",
        ),
        (
            "noheader",
            format!("{ev}\n"),
            "noheader.jsonl line 1: missing header",
        ),
        (
            "version",
            format!("{}\n", header.replace(":1,", ":99,")),
            "version.jsonl line 1: format version 99 is newer",
        ),
        (
            "garbage",
            "\u{0}\u{1}binary\n".into(),
            "garbage.jsonl line 1: not an arp-trace trace",
        ),
    ];
    for (name, content, want) in &cases {
        let f = d.file(&format!("{name}.jsonl"));
        std::fs::write(&f, content).unwrap();
        assert_clean_failure(&arp_trace(&["-r", &f]), want);
        let r = arp_trace(&["diff", &f, &f]);
        assert_eq!(r.status.code(), Some(2), "{r:?}");
        assert_clean_failure(&r, want);
    }
    // A truncated last line is a cut: warned, the rest read, success.
    let f = d.file("trunc.jsonl");
    std::fs::write(&f, format!("{header}\n{ev}\n{}", &ev[..40])).unwrap();
    let r = arp_trace(&["-r", &f, "-q"]);
    assert!(r.status.success(), "{r:?}");
    assert!(
        r.stderr
            .contains(&format!("{f} line 3: the trace was cut mid-record")),
        "{}",
        r.stderr
    );
    assert_eq!(parse_counts(&r.stderr).requests, 1);

    assert_clean_failure(
        &arp_trace(&["-r", &d.0.to_string_lossy()]),
        "is a directory",
    );

    // No permission, as an unprivileged user.
    let f = d.file("secret.jsonl");
    std::fs::write(&f, format!("{header}\n")).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    let r = run_unprivileged(&["-r", &f]);
    assert_clean_failure(&r, &format!("{f}: cannot open: Permission denied"));

    // A FIFO: waits a bounded time for a writer, then reads it like a file.
    let fifo = d.file("fifo");
    let c = std::ffi::CString::new(fifo.clone()).unwrap();
    // SAFETY: mkfifo on a path we own.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let mut cmd = Command::new(bin());
    cmd.args(["-r", &fifo]).env("ARP_TRACE_FIFO_WAIT_MS", "500");
    let r = run_to_completion(cmd, Duration::from_secs(30));
    assert_clean_failure(&r, &format!("{fifo}: a FIFO with no writer"));
    let writer = {
        let fifo = fifo.clone();
        let data = format!("{header}\n{ev}\n");
        std::thread::spawn(move || {
            let mut w = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
            w.write_all(data.as_bytes()).unwrap();
        })
    };
    let r = arp_trace(&["-r", &fifo, "-q"]);
    writer.join().unwrap();
    assert!(r.status.success(), "{r:?}");
    assert_eq!(parse_counts(&r.stderr).requests, 1);
}

/// A 1 GiB line on stdin: refused at the cap, in bounded memory, without reading it all.
#[test]
// The child is reaped with wait4(2) to read its peak RSS.
#[allow(clippy::zombie_processes)]
fn a_gigabyte_line_is_refused_in_bounded_memory() {
    let header = r#"{"type":"header","format_version":1,"snapshot":{}}"#;
    let mut child = Command::new(bin())
        .args(["-r", "-", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'x'; 1 << 20];
        let _ = stdin.write_all(format!("{header}\n{{\"type\":\"arp\",\"x\":\"").as_bytes());
        let mut sent = 0u64;
        for _ in 0..1024 {
            if stdin.write_all(&chunk).is_err() {
                break; // the reader gave up, as it should
            }
            sent += chunk.len() as u64;
        }
        sent
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 on our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    assert_eq!(unsafe { libc::wait4(pid, &mut status, 0, &mut ru) }, pid);
    let sent = writer.join().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(libc::WEXITSTATUS(status), 1, "{err}");
    assert_eq!(
        err.trim(),
        "arp-trace: <stdin> line 2: line longer than 4 MiB: not an arp-trace record (see the \
         limits in arp-trace's README, Traces)"
    );
    assert!(sent < 1 << 30, "stopped reading early ({sent} bytes sent)");
    let max_rss_mib = ru.ru_maxrss / 1024;
    assert!(max_rss_mib < 400, "peak RSS {max_rss_mib} MiB");
}

fn change_is(v: &Value, change: &str) -> bool {
    v["type"] == "facts_change" && v["change"] == change
}

/// An address added and arp_announce raised inside srv while tracing: `facts_change` records
/// in the live `--json` stream, in the `-w` file (jq), and replayed byte for byte.
#[test]
fn address_and_sysctl_changes_are_recorded_and_replayed() {
    let seed = Seed::new();
    let srv = &seed.srv;
    let ns = srv.name();
    let d = Dir::new("changes");
    let (f, g) = (d.file("c.jsonl"), d.file("c.jsonl.zst"));
    let tj = Tracer::start(&["--json", "--netns", ns, "-w", &f]);
    let tt = Tracer::start(&["-v", "--netns", ns, "-w", &g]);
    let eth5: std::net::Ipv4Addr = SRV_ETH5_IP.parse().unwrap();

    // The first request makes the tracers watch srv: its state comes first.
    srv.flush_neigh();
    srv.send_udp(Some(eth5), udp(C3_IP));
    tj.wait_for(
        |v| is_request(v) && v["sender_ip"] == SRV_ETH5_IP,
        EVENT_TIMEOUT,
    );
    tt.wait_for_line(
        |l| l.contains(&format!("tell {SRV_ETH5_IP}")),
        EVENT_TIMEOUT,
    );
    let w = tj.matching(|v| change_is(v, "watched"));
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0]["netns_name"], ns);
    assert_eq!(w[0]["arp_announce"]["eth3"], 0);
    assert!(
        w[0]["addrs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["ifname"] == "eth3" && a["addr"] == SRV_ETH3_IP && a["prefix_len"] == 24),
        "{}",
        w[0]
    );

    // Mid-trace, with no traffic: an address (netlink tells) and a sysctl (re-read).
    srv.ip(&["addr", "add", "198.51.100.11/24", "dev", "eth3"]);
    srv.set_announce("eth3", 2);
    let added = tj.wait_for(|v| change_is(v, "addr_added"), EVENT_TIMEOUT);
    let a = &added[0];
    assert_eq!(
        (
            s(a, "ifname"),
            s(a, "addr"),
            &a["prefix_len"],
            s(a, "netns_name")
        ),
        ("eth3", "198.51.100.11", &Value::from(24), ns),
        "{a}"
    );
    let ann = tj.wait_for(|v| change_is(v, "arp_announce"), EVENT_TIMEOUT);
    let c = &ann[0];
    assert_eq!(
        (s(c, "conf"), &c["before"], &c["after"]),
        ("eth3", &Value::from(0), &Value::from(2)),
        "{c}"
    );
    tt.wait_for_line(
        |l| l.ends_with(&format!(" {ns}/eth3 arp_announce 0 -> 2")),
        EVENT_TIMEOUT,
    );
    tt.wait_for_line(
        |l| l.ends_with(&format!(" {ns}/eth3 +198.51.100.11/24")),
        EVENT_TIMEOUT,
    );

    // The next request is explained with the new facts.
    srv.flush_neigh();
    srv.send_udp(Some(eth5), udp(C3_IP));
    let r = tj.wait_for(
        |v| is_request(v) && v["arp_announce"]["dev"] == 2,
        EVENT_TIMEOUT,
    );
    assert_eq!(s(&r[0], "reason"), "select_announce2", "{}", r[0]);
    srv.ip(&["addr", "del", "198.51.100.11/24", "dev", "eth3"]);
    tj.wait_for(|v| change_is(v, "addr_removed"), EVENT_TIMEOUT);
    tt.wait_for_line(|l| l.ends_with("/eth3 -198.51.100.11/24"), EVENT_TIMEOUT);
    let (st, live_json, e1) = tj.stop();
    assert!(st.success(), "{e1}");
    let (st, live_text, e2) = tt.stop();
    assert!(st.success(), "{e2}");

    // In the stream, each change comes before the request explained with it.
    let recs = parse_json_lines(&live_json);
    let pos = |p: &dyn Fn(&Value) -> bool| recs.iter().position(p).unwrap();
    assert!(pos(&|v| change_is(v, "watched")) < pos(&|v| is_request(v)));
    assert!(
        pos(&|v| change_is(v, "arp_announce"))
            < pos(&|v| is_request(v) && v["arp_announce"]["dev"] == 2)
    );
    assert!(live_text.contains(&format!(" {ns} watching: arp_announce all=0 ")));

    // jq on the trace file: the same records.
    let changes = jq(&["-r", "select(.type==\"facts_change\") | .change", &f]);
    assert_eq!(changes, "watched\naddr_added\narp_announce\naddr_removed\n");
    // Replay: byte-identical JSON, identical text lines.
    let r = arp_trace(&["-r", &f, "--json"]);
    assert!(r.status.success(), "{r:?}");
    assert_eq!(r.stdout, live_json);
    let r = arp_trace(&["-r", &g, "-v"]);
    assert!(r.status.success(), "{r:?}");
    assert_eq!(r.stdout, live_text);
    // Without -v the watched state is not shown, the changes are.
    let r = arp_trace(&["-r", &g]);
    assert!(!r.stdout.contains(" watching: "), "{}", r.stdout);
    assert!(r
        .stdout
        .contains(&format!(" {ns}/eth3 arp_announce 0 -> 2\n")));
}

/// Drops every time in a record, however deep (`time`, a table change's `frame.time`, a
/// conflict's `first_time`): each tracer has its own clock reading.
fn untime(v: &mut Value) {
    match v {
        Value::Object(o) => {
            o.retain(|k, _| k != "time" && !k.ends_with("_time"));
            o.values_mut().for_each(untime);
        }
        Value::Array(a) => a.iter_mut().for_each(untime),
        _ => {}
    }
}
