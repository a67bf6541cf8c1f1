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
