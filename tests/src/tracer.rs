//! The tracer: where its binary is, starting it and waiting for its ready file, reading its
//! output while it runs, stopping it, and its counts line.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::commands::wait_timeout;
use crate::{next_id, parse_json_lines, scaled, EXIT_TIMEOUT, READY_TIMEOUT};

/// The tracer binary: `$ARP_TRACE_BIN`, else `<workspace>/target/debug/arp-trace`.
pub fn bin() -> PathBuf {
    let path = match std::env::var_os("ARP_TRACE_BIN") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/arp-trace"),
    };
    if !path.is_file() {
        panic!(
            "arp-trace binary not found at {}: build it first: cargo build -p arp-trace \
             (cargo xtask test does this)",
            path.display()
        );
    }
    path
}

/// A running `arp-trace`, started with `--ready-file` and waited for.
pub struct Tracer {
    child: Child,
    args: Vec<String>,
    ready_file: PathBuf,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Tracer {
    /// Start the tracer with `args` and wait until its hooks are attached.
    pub fn start(args: &[&str]) -> Tracer {
        Tracer::start_cmd(Command::new(bin()), args)
    }

    /// Start the tracer as user and group 65534 (nobody) holding exactly the capabilities
    /// `caps` (`+bpf,+perfmon,...`, setpriv's syntax), inherited and ambient.
    pub fn start_with_caps(caps: &str, args: &[&str]) -> (Tracer, crate::commands::Exe) {
        let exe = crate::commands::Exe::for_others();
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(format!("--inh-caps={caps}"))
            .arg(format!("--ambient-caps={caps}"))
            .arg(exe.path());
        (Tracer::start_cmd(cmd, args), exe)
    }

    fn start_cmd(mut cmd: Command, args: &[&str]) -> Tracer {
        let ready_file = std::env::temp_dir().join(format!(
            "arp-trace-e2e-{}-{}.ready",
            std::process::id(),
            next_id()
        ));
        let _ = std::fs::remove_file(&ready_file);
        cmd.args(args);
        // The VM suite forces a hook family this way (e.g. kprobe where fentry would win).
        if let Some(h) = std::env::var_os("ARP_TRACE_HOOKS").filter(|h| !h.is_empty()) {
            cmd.arg("--hooks").arg(h);
        }
        let mut child = cmd
            .arg("--ready-file")
            .arg(&ready_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out_pipe = child.stdout.take().unwrap();
        let err_pipe = child.stderr.take().unwrap();
        let readers = vec![
            {
                let stdout = stdout.clone();
                thread::spawn(move || {
                    for line in BufReader::new(out_pipe).lines() {
                        match line {
                            Ok(l) => stdout.lock().unwrap().push(l),
                            Err(_) => break,
                        }
                    }
                })
            },
            {
                let stderr = stderr.clone();
                thread::spawn(move || {
                    let mut r = BufReader::new(err_pipe);
                    let mut line = String::new();
                    loop {
                        line.clear();
                        match r.read_line(&mut line) {
                            Ok(0) | Err(_) => break,
                            Ok(_) => stderr.lock().unwrap().push_str(&line),
                        }
                    }
                })
            },
        ];
        let mut t = Tracer {
            child,
            args: args.iter().map(|s| s.to_string()).collect(),
            ready_file,
            stdout,
            stderr,
            readers,
        };
        t.wait_ready();
        t
    }

    fn wait_ready(&mut self) {
        let timeout = scaled(READY_TIMEOUT);
        let deadline = Instant::now() + timeout;
        loop {
            if self.ready_file.exists() {
                return;
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                panic!(
                    "arp-trace {:?} exited ({status}) before it was ready; stderr:\n{}",
                    self.args,
                    self.stderr()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "arp-trace {:?} not ready after {timeout:?}; stderr so far:\n{}",
                    self.args,
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// A `key=value` line of the ready file (`pid`, `hooks`, `metrics`).
    pub fn ready_value(&self, key: &str) -> Option<String> {
        let text = std::fs::read_to_string(&self.ready_file).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_string)
    }

    /// Where `--metrics` listens (port 0 is resolved), from the ready file.
    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        self.ready_value("metrics")
            .unwrap_or_else(|| panic!("no metrics= in the ready file of {:?}", self.args))
            .parse()
            .expect("an ADDR:PORT")
    }

    pub fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    /// Send `sig` to the tracer.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(
            rc,
            0,
            "kill({}, {sig}): {}",
            self.pid(),
            std::io::Error::last_os_error()
        );
    }

    /// stdout lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The records on stdout so far, parsed as JSON (panics on a line that is not JSON):
    /// events, changes and summaries, without the `{"type":"header",...}` line `--json`
    /// begins with (see [`Tracer::header`]).
    pub fn json(&self) -> Vec<Value> {
        let mut all = parse_json_lines(&self.lines().join("\n"));
        if all.first().is_some_and(|v| v["type"] == "header") {
            all.remove(0);
        }
        all
    }

    /// The `{"type":"header",...}` line `--json` output begins with, once printed.
    pub fn header(&self) -> Option<Value> {
        let first = self.lines().into_iter().next()?;
        let v: Value = serde_json::from_str(&first).ok()?;
        (v["type"] == "header").then_some(v)
    }

    /// Events so far that satisfy `pred`.
    pub fn matching(&self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.json().into_iter().filter(|v| pred(v)).collect()
    }

    /// Wait until at least one event satisfies `pred`; return all that do.
    pub fn wait_for(&self, pred: impl Fn(&Value) -> bool, timeout: Duration) -> Vec<Value> {
        self.wait_for_n(pred, 1, timeout)
    }

    /// Wait until at least `n` events satisfy `pred`; return all that do.
    pub fn wait_for_n(
        &self,
        pred: impl Fn(&Value) -> bool,
        n: usize,
        timeout: Duration,
    ) -> Vec<Value> {
        let timeout = scaled(timeout);
        let deadline = Instant::now() + timeout;
        loop {
            let found = self.matching(&pred);
            if found.len() >= n {
                return found;
            }
            if Instant::now() >= deadline {
                panic!(
                    "waited {timeout:?} for {n} matching event(s), got {}; {}",
                    found.len(),
                    self.report()
                );
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// Wait until a stdout line satisfies `pred` (for text output); return all that do.
    pub fn wait_for_line(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> Vec<String> {
        let timeout = scaled(timeout);
        let deadline = Instant::now() + timeout;
        loop {
            let found: Vec<String> = self.lines().into_iter().filter(|l| pred(l)).collect();
            if !found.is_empty() {
                return found;
            }
            if Instant::now() >= deadline {
                panic!("waited {timeout:?} for a matching line; {}", self.report());
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// What a failed wait shows, most telling first (CI keeps only the head of a long
    /// message): whether the tracer still runs, its stderr, then the newest stdout lines; the
    /// whole stdout goes to a file named here.
    pub fn report(&self) -> String {
        const TAIL: usize = 25;
        const CLIP: usize = 300;
        let pid = self.pid();
        let state = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // "PID (comm) S ...": the state follows the last ')'.
            Ok(stat) => match stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next())
            {
                Some("Z") => "has exited".to_string(),
                Some(st) => format!("is running (state {st})"),
                None => "is in an unknown state".to_string(),
            },
            Err(_) => "has exited".to_string(),
        };
        let lines = self.lines();
        let mut kinds = std::collections::BTreeMap::<String, usize>::new();
        for l in &lines {
            let v: Value = serde_json::from_str(l).unwrap_or(Value::Null);
            let kind = match (
                v["type"].as_str(),
                v["op"].as_str(),
                v["direction"].as_str(),
            ) {
                (Some(t), Some(op), Some(d)) => format!("{t}/{op}/{d}"),
                (Some(t), _, _) => t.to_string(),
                _ => "text".to_string(),
            };
            *kinds.entry(kind).or_default() += 1;
        }
        let saved = std::env::temp_dir().join(format!(
            "arp-trace-e2e-{}-{}.stdout",
            std::process::id(),
            next_id()
        ));
        let saved = match std::fs::write(&saved, lines.join("\n")) {
            Ok(()) => format!("all of it in {}", saved.display()),
            Err(e) => format!("not saved: {e}"),
        };
        let tail: Vec<String> = lines[lines.len().saturating_sub(TAIL)..]
            .iter()
            .map(|l| match l.char_indices().nth(CLIP) {
                Some((i, _)) => format!("{}...", &l[..i]),
                None => l.clone(),
            })
            .collect();
        format!(
            "arp-trace {:?} (pid {pid}) {state}\nstderr:\n{}\nstdout: {} lines by kind {kinds:?} \
             ({saved}); the last {}:\n{}",
            self.args,
            self.stderr(),
            lines.len(),
            tail.len(),
            tail.join("\n")
        )
    }

    /// SIGINT, wait for exit; return (status, stdout, stderr).
    pub fn stop(self) -> (ExitStatus, String, String) {
        self.stop_with(libc::SIGINT)
    }

    /// Send `sig`, wait for exit; return (status, stdout, stderr).
    pub fn stop_with(self, sig: libc::c_int) -> (ExitStatus, String, String) {
        self.signal(sig);
        self.wait_exit(EXIT_TIMEOUT)
    }

    /// Wait for the tracer to exit by itself; return (status, stdout, stderr).
    pub fn wait_exit(mut self, timeout: Duration) -> (ExitStatus, String, String) {
        let timeout = scaled(timeout);
        let status = match wait_timeout(&mut self.child, timeout) {
            Some(s) => s,
            None => panic!("did not exit within {timeout:?}; {}", self.report()),
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let mut stdout = self.lines().join("\n");
        if !stdout.is_empty() {
            stdout.push('\n');
        }
        (status, stdout, self.stderr())
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.ready_file);
    }
}

/// The counts line printed on exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub requests: u64,
    pub replies: u64,
    pub lost: u64,
}

/// Parse `arp-trace: N ARP request(s), M repl(y|ies) captured; L lost (...)...` from stderr.
pub fn parse_counts(stderr: &str) -> Counts {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("arp-trace:") && l.contains("captured") && l.contains("lost"))
        .unwrap_or_else(|| panic!("no counts line in stderr:\n{stderr}"));
    let words: Vec<&str> = line
        .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
        .filter(|w| !w.is_empty())
        .collect();
    let before = |pred: &dyn Fn(&str) -> bool| -> u64 {
        let i = words
            .iter()
            .position(|w| pred(w))
            .unwrap_or_else(|| panic!("cannot parse counts line: {line}"));
        assert!(i > 0, "cannot parse counts line: {line}");
        words[i - 1]
            .parse()
            .unwrap_or_else(|_| panic!("cannot parse counts line: {line}"))
    };
    Counts {
        requests: before(&|w| w == "ARP"),
        replies: before(&|w| w == "reply" || w == "replies"),
        lost: before(&|w| w == "lost"),
    }
}
