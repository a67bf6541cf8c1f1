//! Running programs: `ip`, the tracer as an unprivileged user, `jq`, and waiting for a
//! child with a time limit.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};

use crate::{bin, next_id, scaled};

/// Run `ip ARGS...`, panic with its stderr if it fails; return its stdout.
pub fn ip(args: &[&str]) -> String {
    try_ip(args).unwrap_or_else(|e| panic!("{e:#}"))
}

/// [`ip`] for callers that report errors instead of panicking (the bench); the error says
/// what [`ip`]'s panic says.
pub(crate) fn try_ip(args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| anyhow!("cannot run `ip {}`: {e}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Wait for `child` to exit for at most `timeout`; `None` if it is still running.
pub(crate) fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(e) => panic!("waiting for child {}: {e}", child.id()),
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The outcome of a finished process.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// The stderr lines that are not empty.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }
}

/// Run a command to completion (killing it after `timeout`), capturing its output.
pub fn run_to_completion(mut cmd: Command, timeout: Duration) -> Finished {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let desc = format!("{cmd:?}");
    let timeout = scaled(timeout);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {desc}: {e}"));
    let out = spawn_string_reader(child.stdout.take().unwrap());
    let err = spawn_string_reader(child.stderr.take().unwrap());
    let status = match wait_timeout(&mut child, timeout) {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err.join().unwrap_or_default();
            panic!("{desc} did not exit within {timeout:?}; stderr: {stderr}");
        }
    };
    Finished {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Run arp-trace with `args` to completion (a minute at most, scaled like every timeout).
pub fn arp_trace(args: &[&str]) -> Finished {
    let mut c = Command::new(bin());
    c.args(args);
    run_to_completion(c, Duration::from_secs(60))
}

/// Fails the test if arp-trace panicked.
pub fn no_panic(f: &Finished) {
    assert!(!f.stderr.contains("panicked"), "{f:?}");
}

/// Failed with exit 1 and one line of stderr containing `want`.
pub fn refused(f: &Finished, want: &str) {
    assert_eq!(f.status.code(), Some(1), "{f:?}");
    let lines = f.stderr_lines();
    assert_eq!(lines.len(), 1, "one line for {want}: {f:?}");
    assert!(lines[0].contains(want), "want {want:?} in {:?}", lines[0]);
    no_panic(f);
}

fn spawn_string_reader<R: Read + Send + 'static>(mut r: R) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// True if uid 65534 can reach and execute `path` (every ancestor o+x, the file o+rx).
fn others_can_execute(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Ok(path) = path.canonicalize() else {
        return false;
    };
    let mode = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode())
            .unwrap_or(0)
    };
    mode(&path) & 0o005 == 0o005 && path.ancestors().skip(1).all(|d| mode(d) & 0o001 != 0)
}

/// The tracer binary where user 65534 (nobody) can execute it: the binary itself, or a copy in
/// a private 0755 directory (removed on drop) when the original is not reachable by others.
pub struct Exe {
    path: PathBuf,
    copy_dir: Option<PathBuf>,
}

impl Exe {
    pub fn for_others() -> Exe {
        let bin = bin();
        if others_can_execute(&bin) {
            return Exe {
                path: bin,
                copy_dir: None,
            };
        }
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!(
            "arp-trace-e2e-{}-{}-unpriv",
            std::process::id(),
            next_id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let copy = dir.join("arp-trace");
        std::fs::copy(&bin, &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        Exe {
            path: copy,
            copy_dir: Some(dir),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Exe {
    fn drop(&mut self) {
        if let Some(dir) = &self.copy_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Run the tracer with `args` as user/group 65534 (nobody) via `setpriv`, with `caps`
/// (`+bpf,...`) inherited and ambient, or none.
///
/// A copy of the binary can fail to execute with ETXTBSY while another test thread forks (the
/// child briefly holds the write descriptor), so that case is retried.
pub fn run_unprivileged(args: &[&str]) -> Finished {
    run_with_caps(None, args)
}

pub fn run_with_caps(caps: Option<&str>, args: &[&str]) -> Finished {
    let exe = Exe::for_others();
    let mut attempt = 0;
    loop {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
        if let Some(c) = caps {
            cmd.arg(format!("--inh-caps={c}"))
                .arg(format!("--ambient-caps={c}"));
        }
        cmd.arg(exe.path()).args(args);
        let f = run_to_completion(cmd, Duration::from_secs(30));
        attempt += 1;
        if attempt < 10 && f.stderr.contains("Text file busy") {
            thread::sleep(Duration::from_millis(100));
            continue;
        }
        return f;
    }
}

/// Describe an exit status, naming the signal if it was killed by one.
pub fn describe(status: &ExitStatus) -> String {
    match status.signal() {
        Some(s) => format!("killed by signal {s}"),
        None => format!("{status}"),
    }
}

/// Runs the real `jq` with `args` (options, a filter, files); returns its stdout and panics
/// with its stderr unless it succeeds.
pub fn jq(args: &[&str]) -> String {
    let out = Command::new("jq")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running jq: {e} (install jq; cargo xtask test provisions it)"));
    assert!(
        out.status.success(),
        "jq {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("jq prints UTF-8")
}

/// `jq -c FILTER` over `input` (a tracer's output), read from a file as users would.
pub fn jq_over(filter: &str, input: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let file = std::env::temp_dir().join(format!(
        "arp-trace-e2e-{}-{}.jsonl",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&file, input).unwrap();
    let out = std::panic::catch_unwind(|| jq(&["-c", filter, &file.to_string_lossy()]));
    let _ = std::fs::remove_file(&file);
    out.unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// The workspace's root: where the tests find the schema, the seeds and `target/tools`.
pub fn workspace() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A tool provisioning puts under `target/tools/<dir>` (`cargo xtask test` does), else one on
/// PATH; `how` says how to get it when neither has it.
pub fn provisioned_tool(dir: &str, name: &str, how: &str) -> std::path::PathBuf {
    let provisioned = workspace().join("target/tools").join(dir).join(name);
    if provisioned.is_file() {
        return provisioned;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not found: {how}"))
}

/// A tool provisioning installs into `target/tools/venv` from PyPI.
pub fn venv_tool(name: &str) -> std::path::PathBuf {
    provisioned_tool(
        "venv/bin",
        name,
        &format!("`cargo xtask test` installs it into target/tools/venv (or pip install {name})"),
    )
}
