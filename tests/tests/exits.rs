//! End-to-end: what reaches the outputs on the way out, and how a run ends. A closed stdout or
//! a full disk loses nothing of the trace, and the counts, the summary and the cause are still
//! printed; a cut trace, a corrupt one, a bad value and a filter that matches nothing each end
//! with the documented exit status and message.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use arp_trace_e2e::*;

/// `arp-trace -r BIG -w OUT | head -1`: the reader goes after one line, OUT still gets all.
#[test]
fn replay_into_a_closed_stdout_still_writes_the_whole_trace() {
    let d = Scratch::new("exits-pipe-r");
    let (t, out) = (d.file("big.jsonl"), d.file("out.jsonl.zst"));
    write_trace(&t, 20_000);
    let mut child = Command::new(bin())
        .args(["-r", &t, "-w", &out])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains(" ARP who-has 198.51.100.20"), "{first}");
    // The read end is closed here, as `head -1` does.
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!("stdout closed; still writing {out}")),
        "{err}"
    );
    let back = arp_trace(&["-r", &out, "-q"]);
    assert!(back.status.success(), "{back:?}");
    assert!(
        !back.stderr.contains("warning"),
        "a whole trace, trailer and zstd end: {back:?}"
    );
    assert_eq!(parse_counts(&back.stderr).requests, 20_000);
}

/// Live with `--json -w`: stdout closes after the first line; the trace keeps every request
/// the tracer counted, up to Ctrl-C, and ends whole.
#[test]
fn live_into_a_closed_stdout_still_writes_the_whole_trace() {
    let seed = Seed::new();
    let srv = &seed.srv;
    let d = Scratch::new("exits-pipe-live");
    let (out, ready) = (d.file("live.jsonl.zst"), d.file("ready"));
    let mut t = PipedTracer::spawn(&["--json", "--netns", srv.name(), "-w", &out], &ready);
    t.wait_ready(&ready);
    let resolve = || {
        srv.flush_neigh();
        srv.send_udp(None, udp(C3_IP));
    };
    resolve();
    let mut first = String::new();
    t.stdout.as_mut().unwrap().read_line(&mut first).unwrap();
    assert!(first.starts_with(r#"{"type":""#), "{first}");
    t.stdout = None;
    // The first of these finds stdout closed; the rest go to the trace alone.
    for _ in 0..3 {
        sleep(scaled(Duration::from_millis(300)));
        resolve();
    }
    sleep(scaled(Duration::from_millis(500)));
    assert!(
        t.child.try_wait().unwrap().is_none(),
        "runs on while -w remains"
    );
    t.signal(libc::SIGINT);
    let (st, err) = t.wait(EXIT_TIMEOUT);
    assert!(st.success(), "{err}");
    assert!(
        err.contains(&format!("stdout closed; still writing {out}")),
        "{err}"
    );
    let live = parse_counts(&err);
    assert!(live.requests >= 4, "{err}");
    let back = arp_trace(&["-r", &out, "-q"]);
    assert!(
        back.status.success() && !back.stderr.contains("warning"),
        "{back:?}"
    );
    assert_eq!(
        parse_counts(&back.stderr).requests,
        live.requests,
        "{back:?}"
    );
    assert!(!Path::new(&ready).exists());
}

/// The counts line, then the one-line cause naming the file.
fn ends_with_cause(err: &str, file: &str, cause: &str) {
    let lines: Vec<&str> = err.lines().collect();
    let n = lines.len();
    assert!(n >= 2, "{err}");
    assert!(
        lines[n - 2].contains(" captured; "),
        "counts line first: {err}"
    );
    assert!(
        lines[n - 1].starts_with(&format!("arp-trace: {file}: {cause}")),
        "cause last: {err}"
    );
}

#[test]
fn a_full_disk_or_file_limit_still_ends_with_counts_summary_and_cause() {
    let d = Scratch::new("exits-full");
    let t = d.file("big.jsonl");
    write_trace(&t, 20_000);
    let small = Tmpfs::new("replay", "64k");
    for (opt, out) in [
        ("-w", small.file("t.jsonl")),
        ("--pcap", small.file("t.pcapng")),
    ] {
        let f = arp_trace(&["-r", &t, opt, &out, "-q"]);
        assert_eq!(f.status.code(), Some(1), "{f:?}");
        no_panic(&f);
        assert!(f.stdout.starts_with("Summary: "), "{f:?}");
        ends_with_cause(
            &f.stderr,
            &out,
            "No space left on device (os error 28); it holds",
        );
        if opt == "-w" {
            // What it holds reads as a trace cut at its end.
            let back = arp_trace(&["-r", &out, "-q"]);
            assert!(back.status.success(), "{back:?}");
            assert!(back.stderr.contains("warning:"), "{back:?}");
        }
        std::fs::remove_file(&out).unwrap();
    }
    drop(small);

    // RLIMIT_FSIZE: EFBIG from the write instead of death by SIGXFSZ.
    let p = d.file("t.pcapng");
    let mut c = Command::new(bin());
    c.args(["-r", &t, "--json", "-q", "--pcap", &p]);
    // SAFETY: setrlimit(2) in the child between fork and exec.
    unsafe {
        c.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 64 << 10,
                rlim_max: 64 << 10,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let f = run_to_completion(c, Duration::from_secs(60));
    assert_eq!(describe(&f.status), "exit status: 1", "{f:?}");
    // -q --json: the header line, then the summary.
    let mut lines = f.stdout.lines();
    assert!(
        lines
            .next()
            .is_some_and(|l| l.starts_with(r#"{"type":"header""#)),
        "{f:?}"
    );
    assert!(
        lines
            .next()
            .is_some_and(|l| l.starts_with(r#"{"type":"summary""#)),
        "{f:?}"
    );
    ends_with_cause(&f.stderr, &p, "File too large (os error 27); it holds");
}

/// Live: the disk fills while tracing; the run ends by itself with the counts, the summary
/// and the cause, and the ready file goes.
#[test]
fn a_full_disk_while_tracing_ends_the_run_cleanly() {
    let seed = Seed::new();
    let srv = &seed.srv;
    let d = Scratch::new("exits-full-live");
    let small = Tmpfs::new("live", "1m");
    let (out, ready) = (small.file("t.jsonl"), d.file("ready"));
    let mut t = PipedTracer::spawn(&["--json", "--netns", srv.name(), "-w", &out], &ready);
    t.wait_ready(&ready);
    small.fill();
    let deadline = Instant::now() + scaled(EVENT_TIMEOUT);
    while t.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "still running with a full disk");
        srv.flush_neigh();
        srv.send_udp(None, udp(C3_IP));
        sleep(Duration::from_millis(100));
    }
    let mut stdout = String::new();
    std::io::Read::read_to_string(t.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    let (st, err) = t.wait(EXIT_TIMEOUT);
    assert_eq!(st.code(), Some(1), "{err}");
    no_panic(&Finished {
        status: st,
        stdout: stdout.clone(),
        stderr: err.clone(),
    });
    assert!(
        stdout
            .lines()
            .last()
            .unwrap_or_default()
            .starts_with(r#"{"type":"summary""#),
        "{stdout}"
    );
    ends_with_cause(&err, &out, "No space left on device (os error 28)");
    assert!(
        !Path::new(&ready).exists(),
        "the ready file goes on an error exit too"
    );
}

#[test]
fn a_cut_trace_exits_0_with_a_warning_corruption_before_the_end_1() {
    let d = Scratch::new("exits-cut");
    let whole = d.file("whole.jsonl");
    write_trace(&whole, 50);
    let r = arp_trace(&["-r", &whole, "-q"]);
    assert!(r.status.success() && !r.stderr.contains("warning"), "{r:?}");
    let text = std::fs::read_to_string(&whole).unwrap();
    let text = &text[..text.trim_end().rfind('\n').unwrap() + 1];
    // Cut at the end: before the trailer, and mid-record.
    let (notrailer, partial) = (d.file("notrailer.jsonl"), d.file("partial.jsonl"));
    std::fs::write(&notrailer, text).unwrap();
    std::fs::write(&partial, &text[..text.len() - 40]).unwrap();
    for f in [&notrailer, &partial] {
        let r = arp_trace(&["-r", f, "-q"]);
        assert_eq!(r.status.code(), Some(0), "{r:?}");
        assert!(
            r.stderr.contains(&format!("arp-trace: warning: {f}")),
            "{r:?}"
        );
        assert!(r.stderr.contains("cut"), "{r:?}");
    }
    // A compressed stream that ends early.
    let zst = d.file("w.jsonl.zst");
    assert!(arp_trace(&["-r", &whole, "-q", "-w", &zst])
        .status
        .success());
    let bytes = std::fs::read(&zst).unwrap();
    let cut = d.file("cut.jsonl.zst");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let r = arp_trace(&["-r", &cut, "-q"]);
    assert_eq!(r.status.code(), Some(0), "{r:?}");
    assert!(
        r.stderr.contains("warning:") && r.stderr.contains("cut"),
        "{r:?}"
    );
    // Corruption before the end.
    let bad = d.file("bad.jsonl");
    let mut lines: Vec<&str> = text.lines().collect();
    lines[10] = r#"{"type":"arp","op":"#;
    std::fs::write(&bad, lines.join("\n") + "\n").unwrap();
    refused(
        &arp_trace(&["-r", &bad, "-q"]),
        &format!("{bad} line 11: arp record"),
    );
    // And the help says so.
    let help = arp_trace(&["--help"]);
    let exit = help.stdout.split("Exit status:").nth(1).unwrap_or_default();
    assert!(exit.contains("cut at its end"), "{}", help.stdout);
    assert!(exit.contains("corrupt before its end"), "{}", help.stdout);
}

#[test]
fn a_huge_summary_interval_is_a_usage_error_not_a_panic() {
    for args in [
        &["--summary-interval", "18446744073709551615"][..],
        &["-q", "--summary-interval=99999999999"],
        &[
            "-r",
            "/nonexistent",
            "--summary-interval",
            "18446744073709551615",
        ],
    ] {
        let f = arp_trace(args);
        assert_eq!(f.status.code(), Some(2), "{f:?}");
        no_panic(&f);
        assert!(f.stderr.starts_with("error: "), "{f:?}");
        assert!(f.stderr.contains("give 1 to 31536000 seconds"), "{f:?}");
    }
}

#[test]
fn a_filter_that_matches_nothing_in_the_trace_says_so() {
    let d = Scratch::new("exits-nomatch");
    let t = d.file("t.jsonl");
    write_trace(&t, 3);
    let r = arp_trace(&["-r", &t, "--netns", "nosuchns", "-i", "eth9", "-i", "eth3"]);
    assert_eq!(r.status.code(), Some(0), "{r:?}");
    assert!(
        r.stderr.contains(&format!(
            "warning: --netns nosuchns matches nothing: {t} holds no namespace of that name \
             (it has srv)"
        )),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!(
            "warning: -i eth9 matches nothing: no ARP frame in {t} was sent on an interface \
             of that name (it has eth3)"
        )),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("-i eth3 matches"), "{}", r.stderr);
    // Names that occur: no warning.
    let r = arp_trace(&["-r", &t, "--netns", "srv", "-i", "eth3", "-q"]);
    assert!(r.status.success() && !r.stderr.contains("warning"), "{r:?}");
}
