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
