//! End-to-end command-line behaviour (issue 18): colour on a terminal, NO_COLOR, and outputs
//! arp-trace cannot honour refused up front.

use std::process::Command;
use std::time::Duration;

use arp_trace_e2e::*;

/// The seed's foreign-sender request, saved with -w.
fn foreign_trace(d: &Scratch) -> String {
    let seed = Seed::new();
    let trace = d.file("seed.jsonl");
    let t = Tracer::start(&["--json", "--netns", seed.srv.name(), "-w", &trace]);
    seed.srv
        .send_udp(Some(SRV_ETH5_IP.parse().unwrap()), udp(C3_IP));
    t.wait_for(
        |v| is_request(v) && v["foreign_sender"] == true,
        EVENT_TIMEOUT,
    );
    let (status, _, stderr) = t.stop();
    assert!(status.success(), "{stderr}");
    trace
}

/// Replays `trace` with `args` on a terminal (script(1) gives it a pty), `no_color` as
/// NO_COLOR; returns what the terminal received.
fn on_a_terminal(trace: &str, args: &str, no_color: Option<&str>) -> String {
    let cmd = format!("{} -r {trace} {args}", bin().display());
    let mut c = Command::new("script");
    c.args(["-q", "-e", "-c", &cmd, "/dev/null"]);
    c.env_remove("NO_COLOR");
    if let Some(v) = no_color {
        c.env("NO_COLOR", v);
    }
    let f = run_to_completion(c, Duration::from_secs(60));
    assert!(f.status.success(), "{cmd}: {f:?}");
    assert!(f.stdout.contains("who-has"), "{cmd}: {f:?}");
    f.stdout
}

#[test]
fn colour_follows_the_option_then_no_color_then_the_terminal() {
    let d = Scratch::new("cli-colour");
    let trace = foreign_trace(&d);
    let red = |s: &str| s.contains("\x1b[");
    assert!(red(&on_a_terminal(&trace, "", None)), "auto on a terminal");
    assert!(
        red(&on_a_terminal(&trace, "", Some(""))),
        "an empty NO_COLOR"
    );
    assert!(!red(&on_a_terminal(&trace, "", Some("1"))), "NO_COLOR=1");
    assert!(!red(&on_a_terminal(&trace, "--color never", None)));
    assert!(red(&on_a_terminal(&trace, "--color always", Some("1"))));
    // Not a terminal: only `always` colours.
    let piped = arp_trace(&["-r", &trace]);
    assert!(piped.status.success() && !red(&piped.stdout), "{piped:?}");
    let forced = arp_trace(&["-r", &trace, "--color", "always"]);
    assert!(red(&forced.stdout), "{forced:?}");
}

#[test]
fn a_compression_arp_trace_cannot_write_is_a_usage_error() {
    let d = Scratch::new("cli-suffix");
    let t = d.file("t.jsonl");
    write_trace(&t, 3);
    for name in ["out.bz2", "out.jsonl.xz"] {
        let out = d.file(name);
        let f = arp_trace(&["-r", &t, "-w", &out]);
        assert_eq!(f.status.code(), Some(2), "{f:?}");
        no_panic(&f);
        assert!(f.stderr.contains(".gz and .zst"), "{f:?}");
        assert!(!std::path::Path::new(&out).exists(), "{out} was written");
    }
}

/// A real trace from a live run, kept as the fuzzer's seed.
const SEED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/seeds/six.jsonl");

/// The seed with `pointer` of its line 3 (an ARP request) set to `value`.
fn seed_with(d: &Scratch, name: &str, pointer: &str, value: serde_json::Value) -> String {
    let seed = std::fs::read_to_string(SEED).unwrap();
    let mut lines: Vec<String> = seed.lines().map(str::to_string).collect();
    let mut rec: serde_json::Value = serde_json::from_str(&lines[2]).unwrap();
    *rec.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("{pointer}")) = value;
    lines[2] = rec.to_string();
    let path = d.file(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

#[test]
fn a_bad_record_names_its_line_and_field_and_quotes_little() {
    use serde_json::json;
    let d = Scratch::new("cli-errors");
    let long = "7".repeat(300);
    for (pointer, value, want) in [
        (
            "/time",
            json!("2026-02-31T23:59:60.5Z"),
            "line 3: arp record: time: \"2026-02-31T23:59:60.5Z\" is not an RFC 3339 time \
             that exists",
        ),
        (
            "/sender_ip",
            json!("999.1.1.1"),
            "line 3: arp record: sender_ip: invalid IPv4 address syntax (got \"999.1.1.1\")",
        ),
        (
            "/trigger/sport",
            json!(long),
            "line 3: arp record: trigger.sport: invalid type: string \"777",
        ),
        (
            "/trigger/comm",
            json!(7),
            "line 3: arp record: trigger.comm: invalid type: integer `7`, expected",
        ),
        (
            "/op",
            json!("who-has"),
            "line 3: arp record: op: unknown variant `who-has`",
        ),
    ] {
        let t = seed_with(&d, "bad.jsonl", pointer, value);
        let f = arp_trace(&["-r", &t, "-q"]);
        refused(&f, want);
        let line = &f.stderr_lines()[0];
        assert!(
            !line.contains(&"7".repeat(81)),
            "quoted more than 80: {line}"
        );
        assert!(
            !line.contains("at line 1 column"),
            "decoder's position: {line}"
        );
    }
    // Compressed: a cut stream and a damaged one, each in words.
    let zst = std::fs::read(format!("{SEED}.zst")).unwrap();
    let cut = d.file("cut.jsonl.zst");
    std::fs::write(&cut, &zst[..zst.len() - 300]).unwrap();
    // The seed is one zstd block: cut, not even its header is left.
    refused(
        &arp_trace(&["-r", &cut, "-q"]),
        "cannot read the header: the zstd stream ends early (file cut?)",
    );
    let mut bad = zst.clone();
    bad[zst.len() / 3] ^= 0xff;
    let damaged = d.file("damaged.jsonl.zst");
    std::fs::write(&damaged, &bad).unwrap();
    refused(
        &arp_trace(&["-r", &damaged, "-q"]),
        "the zstd stream is damaged",
    );
}

#[test]
fn clock_times_are_in_the_local_zone_of_tz() {
    // The seed's first request left at 20:34:43.137941 UTC; five and a half hours east of
    // UTC (POSIX TZ counts west) that is 02:04:43.137941 the next day.
    let mut c = Command::new(bin());
    c.args(["-r", SEED]).env("TZ", "UTC-05:30");
    let f = run_to_completion(c, Duration::from_secs(60));
    assert!(f.status.success(), "{f:?}");
    assert!(f.stdout.starts_with("02:04:43.137941 "), "{f:?}");
}

/// `-w FILE` replayed as `--json`: the events a consumer would get.
fn replayed_json(trace: &str) -> Vec<serde_json::Value> {
    let f = arp_trace(&["-r", trace, "--json"]);
    assert!(f.status.success(), "{f:?}");
    parse_json_lines(&f.stdout)
        .into_iter()
        .filter(|v| v["type"] == "arp")
        .collect()
}

#[test]
fn w_dash_writes_the_trace_to_stdout_for_a_pipe() {
    let d = Scratch::new("cli-wdash");
    // The trace on stdout, nothing else there; the summary goes to stderr.
    let f = arp_trace(&["-r", SEED, "-w", "-"]);
    assert!(f.status.success(), "{f:?}");
    let lines = parse_json_lines(&f.stdout);
    assert_eq!(lines[0]["type"], "header", "{f:?}");
    assert_eq!(lines.last().unwrap()["type"], "summary", "{f:?}");
    assert!(f.stderr.contains("Summary: 5 ARP requests"), "{f:?}");
    // It reads back as the trace it came from.
    let piped = d.file("piped.jsonl");
    std::fs::write(&piped, &f.stdout).unwrap();
    assert_eq!(replayed_json(&piped), replayed_json(SEED));
    // Standard output cannot also carry --json, and a pipe cannot be rotated.
    for argv in [&["-w", "-", "--json"][..], &["-w", "-", "-C", "1"]] {
        let f = arp_trace(&[&["-r", SEED][..], argv].concat());
        assert_eq!(f.status.code(), Some(2), "{argv:?}: {f:?}");
        assert!(f.stderr.contains("-w -"), "{f:?}");
    }
}

#[test]
fn a_trace_written_to_a_device_or_fifo_is_not_a_failure() {
    // fdatasync() on /dev/null or a FIFO says EINVAL: nothing to sync, not a failed output.
    let f = arp_trace(&["-r", SEED, "-q", "-w", "/dev/null"]);
    assert_eq!(f.status.code(), Some(0), "{f:?}");
    assert!(!f.stderr.contains("Invalid argument"), "{f:?}");
}

#[test]
fn live_only_options_warn_when_replaying() {
    let f = arp_trace(&["-r", SEED, "-q", "-B", "64", "--hooks", "kprobe"]);
    assert!(f.status.success(), "{f:?}");
    assert!(
        f.stderr
            .contains("warning: -B does nothing with -r: it sizes the kernel's ring buffer"),
        "{f:?}"
    );
    assert!(
        f.stderr.contains("warning: --hooks does nothing with -r"),
        "{f:?}"
    );
    let plain = arp_trace(&["-r", SEED, "-q"]);
    assert!(!plain.stderr.contains("warning"), "{plain:?}");
}

/// Sends one UDP datagram to `dst` from a process of its own in `ns`: `python3` or `bash`.
fn send_from(ns: &Netns, program: &str, dst: &str) -> u32 {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns.name()]);
    match program {
        "python3" => c.args([
            "python3",
            "-c",
            &format!(
                "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\
                 .sendto(b'x', ('{dst}', 9))"
            ),
        ]),
        _ => c.args(["bash", "-c", &format!("echo x > /dev/udp/{dst}/9")]),
    };
    let mut child = c.spawn().unwrap();
    // `ip netns exec` execs the program: the child's PID is the sender's.
    let pid = child.id();
    assert!(child.wait().unwrap().success(), "{program}");
    pid
}

#[test]
fn pid_and_comm_keep_only_that_process_s_requests_live_and_replayed() {
    let d = Scratch::new("cli-pid");
    let seed = Seed::new();
    let trace = d.file("all.jsonl");
    // Absent neighbours on net-3, so each datagram makes the kernel ask.
    let (py_dst, sh_dst) = ("198.51.100.77", "198.51.100.78");
    let all = Tracer::start(&["--json", "--netns", seed.srv.name(), "-w", &trace]);
    let by_comm = Tracer::start(&["--json", "--netns", seed.srv.name(), "--comm", "python3"]);
    let py = send_from(&seed.srv, "python3", py_dst);
    let sh = send_from(&seed.srv, "bash", sh_dst);
    let asked = |v: &serde_json::Value, dst: &str| is_request(v) && v["target_ip"] == dst;
    all.wait_for(|v| asked(v, py_dst), EVENT_TIMEOUT);
    all.wait_for(|v| asked(v, sh_dst), EVENT_TIMEOUT);
    // By the time `all` saw both, so did the other tracer (same ring, same order).
    by_comm.wait_for(|v| asked(v, py_dst), EVENT_TIMEOUT);
    std::thread::sleep(Duration::from_millis(500));
    let (status, out, err) = by_comm.stop();
    assert!(status.success(), "{err}");
    let kept: Vec<_> = parse_json_lines(&out)
        .into_iter()
        .filter(is_request)
        .collect();
    assert!(!kept.is_empty());
    for v in &kept {
        assert_eq!(v["trigger"]["comm"], "python3", "{v}");
        assert_eq!(v["trigger"]["pid"], py, "{v}");
    }
    let (status, _, err) = all.stop();
    assert!(status.success(), "{err}");
    // Replayed: --pid of the bash sender keeps its requests and none of python3's.
    let f = arp_trace(&["-r", &trace, "--json", "--pid", &sh.to_string()]);
    assert!(f.status.success(), "{f:?}");
    let kept: Vec<_> = parse_json_lines(&f.stdout)
        .into_iter()
        .filter(is_request)
        .collect();
    assert!(kept.iter().any(|v| v["target_ip"] == sh_dst), "{f:?}");
    for v in &kept {
        assert_eq!(v["trigger"]["pid"], sh, "{v}");
        assert_eq!(v["trigger"]["comm"], "bash", "{v}");
    }
    // Both given: either matches.
    let f = arp_trace(&[
        "-r",
        &trace,
        "--json",
        "--pid",
        &sh.to_string(),
        "--comm",
        "python3",
    ]);
    let targets: std::collections::BTreeSet<String> = parse_json_lines(&f.stdout)
        .into_iter()
        .filter(is_request)
        .map(|v| v["target_ip"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        targets.contains(py_dst) && targets.contains(sh_dst),
        "{f:?}"
    );
}
