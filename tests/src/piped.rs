//! The tracer with its stdout a pipe the test holds, to close it the way `| head` does, and
//! its stderr collected whole for the exit checks.

use std::io::BufReader;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::thread::{self, sleep, JoinHandle};
use std::time::{Duration, Instant};

use crate::{bin, scaled, READY_TIMEOUT};

/// The tracer run live with `args` and `--ready-file ready`, its stdout a pipe the test holds.
pub struct PipedTracer {
    pub child: Child,
    /// Set to `None` to close it, as `| head` does once it has its lines.
    pub stdout: Option<BufReader<ChildStdout>>,
    stderr: Option<JoinHandle<String>>,
}

impl PipedTracer {
    pub fn spawn(args: &[&str], ready: &str) -> PipedTracer {
        let mut cmd = Command::new(bin());
        cmd.args(args).args(["--ready-file", ready]);
        if let Some(h) = std::env::var_os("ARP_TRACE_HOOKS").filter(|h| !h.is_empty()) {
            cmd.arg("--hooks").arg(h);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = child.stderr.take().unwrap();
        let stderr = thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut err, &mut s);
            s
        });
        PipedTracer {
            stdout: Some(BufReader::new(child.stdout.take().unwrap())),
            child,
            stderr: Some(stderr),
        }
    }

    /// Waits for the ready file (panics if the tracer exits first).
    pub fn wait_ready(&mut self, ready: &str) {
        let deadline = Instant::now() + scaled(READY_TIMEOUT);
        while !Path::new(ready).exists() {
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!("exited ({st}) before ready: {}", self.stderr());
            }
            assert!(Instant::now() < deadline, "not ready in time");
            sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
    }

    /// Waits for the exit; returns the status and all of stderr.
    pub fn wait(&mut self, timeout: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + scaled(timeout);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                self.stdout = None;
                return (st, self.stderr());
            }
            assert!(Instant::now() < deadline, "did not exit in time");
            sleep(Duration::from_millis(20));
        }
    }

    /// All of stderr (kills the tracer if it still runs).
    pub fn stderr(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for PipedTracer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
