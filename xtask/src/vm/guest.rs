//! Running a guest: booting QEMU on a kernel and an initramfs, and reading the console's
//! marker lines and libtest's summaries into a report with a verdict.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::kernels::Kernel;

const MARK: &str = "@@ARP-TRACE-VM@@";

/// Per-guest limit: boot plus every test binary. Override with ARP_TRACE_VM_TIMEOUT (seconds).
const DEFAULT_GUEST_TIMEOUT: Duration = Duration::from_secs(900);

/// What one test binary did in the guest.
#[derive(Debug, Default, PartialEq)]
pub struct BinResult {
    pub name: String,
    /// Exit code; `None` if its END marker never came.
    pub rc: Option<i32>,
    pub passed: u32,
    pub failed: u32,
    pub ignored: u32,
    pub failed_tests: Vec<String>,
}

/// Everything the host learns from the guest's console.
#[derive(Debug, Default, PartialEq)]
pub struct GuestReport {
    pub booted: bool,
    pub done: bool,
    pub bins: Vec<BinResult>,
    pub errors: Vec<String>,
    /// The guest kernel died of what software emulation is known to cause, and where:
    /// - a stray breakpoint (`Oops: int3`): the kernel patches a hooked site through an int3
    ///   when a hook is attached or detached, and under TCG's multi-threaded emulation another
    ///   vCPU can still run that byte after the patch is done. Seen in 6.12 guests at
    ///   `arp_solicit+0x5`, at boot in `sched_clock_cpu`, and most often at the softirq
    ///   tracepoints' `handle_softirqs+0xd1`;
    /// - a soft lockup (`softlockup_panic=1` turns it into a panic): seen once in a 6.1 guest
    ///   with both vCPUs stuck at once, one in the tracer (attaching) and one in `ip`, the
    ///   same patching race seen as a livelock instead of an oops.
    pub emulation: Option<String>,
    /// The first sign that the guest kernel died or stalled (an oops, a panic, a soft
    /// lockup, a hung task) and where, so a CI log's summary says why a binary never ended.
    pub died: Option<String>,
}

/// Console text that means the guest kernel itself is in trouble.
const DEATHS: [&str; 5] = [
    "Oops: ",
    "Kernel panic",
    "BUG: ",
    "watchdog: ",
    "blocked for more than",
];

/// Feeds console lines in order; markers may sit after other text on the same line because
/// kernel messages share the console.
impl GuestReport {
    pub fn feed(&mut self, line: &str) {
        if let Some(i) = DEATHS.iter().filter_map(|d| line.find(d)).min() {
            if self.died.is_none() {
                let what = line[i..].trim().to_string();
                if what.starts_with("Oops: int3") || what.contains("soft lockup") {
                    self.emulation = Some(what.clone());
                }
                self.died = Some(what);
            }
        } else if let Some(i) = line.find("RIP: 0010:") {
            let rip = line[i + "RIP: 0010:".len()..].trim();
            for s in [&mut self.died, &mut self.emulation] {
                if let Some(s) = s.as_mut().filter(|s| !s.contains(" at ")) {
                    s.push_str(" at ");
                    s.push_str(rip);
                }
            }
        }
        if let Some(i) = line.find(MARK) {
            let mut w = line[i + MARK.len()..].split_whitespace();
            match w.next() {
                Some("BOOTED") => self.booted = true,
                Some("BEGIN") => self.bins.push(BinResult {
                    name: w.next().unwrap_or("?").to_string(),
                    ..Default::default()
                }),
                Some("END") => {
                    let name = w.next().unwrap_or("?");
                    let rc = w.next().and_then(|r| r.parse().ok());
                    match self.bins.last_mut().filter(|b| b.name == name) {
                        Some(b) => b.rc = rc,
                        None => self.errors.push(format!("END without BEGIN for {name}")),
                    }
                }
                Some("DONE") => self.done = true,
                Some("ERROR") => self.errors.push(w.collect::<Vec<_>>().join(" ")),
                _ => {}
            }
            return;
        }
        let Some(cur) = self.bins.last_mut().filter(|b| b.rc.is_none()) else {
            return;
        };
        let line = line.trim();
        // libtest: "test result: FAILED. 3 passed; 1 failed; 0 ignored; ..."
        if let Some(r) = line.strip_prefix("test result: ") {
            for part in r.split(';') {
                let mut w = part.split_whitespace().rev();
                let (what, n) = (w.next(), w.next().and_then(|n| n.parse::<u32>().ok()));
                match (what, n) {
                    (Some("passed"), Some(n)) => cur.passed += n,
                    (Some("failed"), Some(n)) => cur.failed += n,
                    (Some("ignored"), Some(n)) => cur.ignored += n,
                    _ => {}
                }
            }
        } else if let Some(t) = line
            .strip_prefix("test ")
            .and_then(|l| l.strip_suffix(" ... FAILED"))
        {
            cur.failed_tests.push(t.to_string());
        }
    }

    /// The first expected binary that has not ended: where a second boot resumes.
    pub fn resume_point<'a>(&self, expected: &'a [String]) -> Option<&'a str> {
        expected
            .iter()
            .find(|e| !self.bins.iter().any(|b| &b.name == *e && b.rc.is_some()))
            .map(String::as_str)
    }

    /// This run's ended binaries followed by what a resumed boot reported.
    pub fn resumed_by(mut self, later: GuestReport) -> GuestReport {
        self.bins.retain(|b| b.rc.is_some());
        self.bins.extend(later.bins);
        self.errors.extend(later.errors);
        GuestReport {
            booted: self.booted && later.booted,
            done: later.done,
            bins: self.bins,
            errors: self.errors,
            emulation: later.emulation,
            died: later.died,
        }
    }

    /// Why this run failed, or `None` if every expected binary ran and exited 0.
    pub fn verdict(&self, expected: &[String]) -> Option<String> {
        let mut why = Vec::new();
        if !self.booted {
            why.push("the guest never reached the test runner".to_string());
        }
        why.extend(self.errors.iter().cloned());
        for e in expected {
            match self.bins.iter().find(|b| &b.name == e) {
                None => why.push(format!("{e}: never started")),
                Some(b) => match b.rc {
                    None => why.push(match &self.died {
                        Some(d) => format!("{e}: no exit marker (guest kernel: {d})"),
                        None => format!("{e}: no exit marker (guest died or hung)"),
                    }),
                    Some(0) => {}
                    Some(rc) => why.push(format!(
                        "{e}: exit {rc}, failed: {}",
                        if b.failed_tests.is_empty() {
                            "(no test names reported)".to_string()
                        } else {
                            b.failed_tests.join(", ")
                        }
                    )),
                },
            }
        }
        if why.is_empty() && !self.done {
            why.push("no DONE marker".into());
        }
        (!why.is_empty()).then(|| why.join("; "))
    }
}

pub(super) struct RowOutcome {
    pub(super) label: String,
    pub(super) report: GuestReport,
    pub(super) failure: Option<String>,
    /// What the host saw go wrong beside the console: the time limit, qemu's exit status.
    pub(super) host_note: Option<String>,
    pub(super) boot: Option<Duration>,
    pub(super) wall: Duration,
}

/// The row's verdict: the console's, with the host's note in front when there is one.
pub(super) fn judge(
    report: &GuestReport,
    expected: &[String],
    host: Option<&str>,
) -> Option<String> {
    match (host, report.verdict(expected)) {
        (Some(h), Some(v)) => Some(format!("{h}; {v}")),
        (h, v) => v.or(h.map(str::to_string)),
    }
}

fn guest_timeout() -> Duration {
    std::env::var("ARP_TRACE_VM_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_GUEST_TIMEOUT)
}

pub(super) fn boot(
    k: &Kernel,
    initrd: &Path,
    label: &str,
    expected: &[String],
    from: Option<&str>,
) -> Result<RowOutcome> {
    // A soft lockup panics at once (and says where) instead of hanging until the time limit;
    // loglevel=5 lets the lockup's backtrace, printed at the default level, reach the console.
    let mut append = "console=ttyS0 panic=-1 quiet loglevel=5 softlockup_panic=1".to_string();
    if let Some(t) = from {
        append.push_str(" arp_trace_vm_from=");
        append.push_str(t);
    }
    let start = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg,thread=multi", "-cpu", "max", "-m", "1536"])
        .args(["-smp", "2", "-nographic", "-no-reboot", "-nic", "none"])
        .arg("-kernel")
        .arg(&k.vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(&append)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start qemu-system-x86_64")?;
    let (tx, rx) = mpsc::channel::<String>();
    let mut readers = Vec::new();
    for pipe in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            let mut r = BufReader::new(pipe);
            let mut buf = Vec::new();
            while matches!(r.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
                let line = printable(&String::from_utf8_lossy(&buf));
                if tx.send(line).is_err() {
                    break;
                }
                buf.clear();
            }
        }));
    }
    drop(tx);
    let deadline = start + guest_timeout();
    let mut report = GuestReport::default();
    let mut boot_time = None;
    let mut timed_out = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                println!("[{label}] {line}");
                report.feed(&line);
                if boot_time.is_none() && report.booted {
                    boot_time = Some(start.elapsed());
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                let _ = child.kill();
                break;
            }
        }
    }
    let status = child.wait()?;
    for r in readers {
        let _ = r.join();
    }
    let host_note = if timed_out {
        Some(format!(
            "guest did not finish within {}s (ARP_TRACE_VM_TIMEOUT); qemu killed",
            guest_timeout().as_secs(),
        ))
    } else {
        (!status.success()).then(|| format!("qemu exited with {status}"))
    };
    Ok(RowOutcome {
        label: label.into(),
        failure: judge(&report, expected, host_note.as_deref()),
        report,
        host_note,
        boot: boot_time,
        wall: start.elapsed(),
    })
}

/// `line` without terminal escape sequences and control characters (the firmware clears the
/// screen), so CI logs stay readable.
pub fn printable(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // CSI: parameters and intermediates, then one final byte in @..~.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
        } else if c == '\t' || !c.is_control() {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn markers_and_libtest_summary_are_parsed() {
        let console = "\
[    1.2] random: crng init done
@@ARP-TRACE-VM@@ BOOTED 6.1.0-50-amd64 3.21
@@ARP-TRACE-VM@@ BEGIN capture
running 3 tests
test a ... ok
test b ... FAILED
test c ... ok
test result: FAILED. 2 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out
[   40.0] veth: some kernel line @@ARP-TRACE-VM@@ END capture 101
@@ARP-TRACE-VM@@ BEGIN netns_names
test result: ok. 4 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out
@@ARP-TRACE-VM@@ END netns_names 0
@@ARP-TRACE-VM@@ DONE
";
        let mut r = GuestReport::default();
        console.lines().for_each(|l| r.feed(l));
        assert!(r.booted && r.done);
        assert_eq!(
            r.bins,
            vec![
                BinResult {
                    name: "capture".into(),
                    rc: Some(101),
                    passed: 2,
                    failed: 1,
                    ignored: 1,
                    failed_tests: vec!["b".into()],
                },
                BinResult {
                    name: "netns_names".into(),
                    rc: Some(0),
                    passed: 4,
                    failed: 0,
                    ignored: 0,
                    failed_tests: vec![],
                },
            ]
        );
        let v = r.verdict(&names(&["capture", "netns_names"])).unwrap();
        assert!(v.contains("capture: exit 101, failed: b"), "{v}");
        assert!(!v.contains("netns_names"), "{v}");
        // A binary the host built but the guest never ran is a failure too.
        let v = r.verdict(&names(&["netns_names", "attribution"])).unwrap();
        assert!(v.contains("attribution: never started"), "{v}");
    }

    #[test]
    fn missing_markers_fail() {
        let mut r = GuestReport::default();
        assert!(r.verdict(&names(&["capture"])).is_some());
        r.feed("@@ARP-TRACE-VM@@ BOOTED x 1.0");
        r.feed("@@ARP-TRACE-VM@@ BEGIN capture");
        r.feed("test result: ok. 1 passed; 0 failed;");
        let v = r.verdict(&names(&["capture"])).unwrap();
        assert!(v.contains("no exit marker"), "{v}");
        r.feed("@@ARP-TRACE-VM@@ END capture 0");
        assert_eq!(r.verdict(&names(&["capture"])).unwrap(), "no DONE marker");
        r.feed("@@ARP-TRACE-VM@@ DONE");
        assert_eq!(r.verdict(&names(&["capture"])), None);
    }

    #[test]
    fn a_stray_int3_is_noticed_with_where_it_hit() {
        let mut r = GuestReport::default();
        for l in [
            "[   28.561820] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI",
            "[   28.562843] RIP: 0010:arp_solicit+0x5/0x310",
            "[   28.564099] RIP: 0010:filemap_get_entry+0xa8/0x1b0",
        ] {
            r.feed(l);
        }
        assert_eq!(
            r.emulation.as_deref(),
            Some("Oops: int3: 0000 [#1] PREEMPT SMP NOPTI at arp_solicit+0x5/0x310")
        );
        let mut r = GuestReport::default();
        r.feed("[ 1.0] BUG: kernel NULL pointer dereference");
        r.feed("[ 1.0] RIP: 0010:arp_solicit+0x5/0x310");
        assert_eq!(r.emulation, None, "other oopses are not retried");
        assert_eq!(
            r.died.as_deref(),
            Some("BUG: kernel NULL pointer dereference at arp_solicit+0x5/0x310")
        );
    }

    #[test]
    fn a_soft_lockup_is_an_emulation_death_too() {
        let mut r = GuestReport::default();
        r.feed("[ 72.6] watchdog: BUG: soft lockup - CPU#0 stuck for 45s! [ip:285]");
        r.feed("[ 72.6] RIP: 0010:smp_call_function_many_cond+0x120/0x3a0");
        r.feed("[ 72.7] Kernel panic - not syncing: softlockup: hung tasks");
        assert_eq!(
            r.emulation.as_deref(),
            Some("watchdog: BUG: soft lockup - CPU#0 stuck for 45s! [ip:285] at smp_call_function_many_cond+0x120/0x3a0")
        );
        let mut r = GuestReport::default();
        r.feed("[ 9.0] INFO: task arp-trace:77 blocked for more than 120 seconds.");
        assert!(
            r.died.is_some() && r.emulation.is_none(),
            "a hung task is not retried"
        );
    }

    #[test]
    fn a_dead_guest_says_why_in_the_verdict() {
        let mut r = GuestReport::default();
        r.feed("@@ARP-TRACE-VM@@ BOOTED x 1.0");
        r.feed("@@ARP-TRACE-VM@@ BEGIN files");
        r.feed("[ 9.0] watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [arp-trace:77]");
        r.feed("[ 9.0] RIP: 0010:handle_softirqs+0x60/0x2b0");
        let v = r.verdict(&names(&["files"])).unwrap();
        assert!(
            v.contains("files: no exit marker (guest kernel: watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [arp-trace:77] at handle_softirqs+0x60/0x2b0)"),
            "{v}"
        );
        assert_eq!(
            judge(&r, &names(&["files"]), Some("qemu exited with 1")).unwrap(),
            format!("qemu exited with 1; {v}")
        );
    }

    #[test]
    fn a_second_boot_resumes_at_the_binary_that_did_not_end() {
        let all = names(&["capture", "files", "hooks"]);
        let mut first = GuestReport::default();
        for l in [
            "@@ARP-TRACE-VM@@ BOOTED x 1.0",
            "@@ARP-TRACE-VM@@ BEGIN capture",
            "test result: ok. 2 passed; 0 failed; 0 ignored;",
            "@@ARP-TRACE-VM@@ END capture 0",
            "@@ARP-TRACE-VM@@ BEGIN files",
            "test result: ok. 1 passed; 0 failed; 0 ignored;",
            "[ 9.0] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI",
        ] {
            first.feed(l);
        }
        assert_eq!(first.resume_point(&all), Some("files"));
        let mut second = GuestReport::default();
        for l in [
            "@@ARP-TRACE-VM@@ BOOTED x 1.0",
            "@@ARP-TRACE-VM@@ BEGIN files",
            "test result: ok. 3 passed; 0 failed; 0 ignored;",
            "@@ARP-TRACE-VM@@ END files 0",
            "@@ARP-TRACE-VM@@ BEGIN hooks",
            "test result: ok. 1 passed; 0 failed; 0 ignored;",
            "@@ARP-TRACE-VM@@ END hooks 0",
            "@@ARP-TRACE-VM@@ DONE",
        ] {
            second.feed(l);
        }
        let r = first.resumed_by(second);
        assert_eq!(r.verdict(&all), None);
        let passed: Vec<_> = r.bins.iter().map(|b| (b.name.as_str(), b.passed)).collect();
        assert_eq!(passed, [("capture", 2), ("files", 3), ("hooks", 1)]);
        assert_eq!(r.resume_point(&all), None);
    }

    #[test]
    fn console_escapes_are_dropped() {
        assert_eq!(
            printable("\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16)\r\n"),
            "SeaBIOS (version 1.16)"
        );
        assert_eq!(printable("test a ... ok\r"), "test a ... ok");
    }
}
