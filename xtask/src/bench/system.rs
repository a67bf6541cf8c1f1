//! Processes, namespaces and interruption: Ctrl-C handling, children killed on drop, the
//! tracer with its ready file, temporary files, and throw-away network namespaces.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub(super) static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C sets a flag the loops check, so the namespaces and children are cleaned up by the
/// guards' `Drop` on the way out instead of being left behind by a killed process.
pub(super) fn catch_interrupt() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        let handler = on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

pub(super) fn check_interrupt() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted; namespaces and processes cleaned up");
    }
    Ok(())
}

/// Sleeps, waking early (with an error) on Ctrl-C.
pub(super) fn pause(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        check_interrupt()?;
        thread::sleep((end - Instant::now()).min(Duration::from_millis(50)));
    }
    check_interrupt()
}

pub(super) fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique(tag: &str) -> String {
    format!(
        "xb{}x{}{tag}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A network namespace the bench created, deleted on drop (also on error and Ctrl-C).
pub(super) struct Netns {
    pub(super) name: String,
}

impl Netns {
    pub(super) fn new(role: &str) -> Result<Netns> {
        let name = unique(role);
        output(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        // IPv6 autoconfiguration would add frames of its own to the captures.
        ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
        ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1")?;
        Ok(ns)
    }

    pub(super) fn ip(&self, args: &[&str]) -> Result<String> {
        output(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// A command run inside the namespace.
    pub(super) fn exec(&self, prog: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, prog]);
        c
    }

    /// A sysctl of this namespace only (run inside it).
    pub(super) fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        output(
            self.exec("sysctl")
                .args(["-q", "-w", &format!("{key}={value}")]),
        )
        .map(|_| ())
    }

    fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    pub(super) fn wait_up(&self, dev: &str) -> Result<()> {
        let end = Instant::now() + Duration::from_secs(10);
        while !self.ip(&["link", "show", "dev", dev])?.contains("LOWER_UP") {
            if Instant::now() > end {
                bail!("{}/{dev} has no carrier after 10 s", self.name);
            }
            pause(Duration::from_millis(20))?;
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = output(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!("xtask bench: warning: {e:#}");
        }
    }
}

/// Runs `f` on a thread that has entered `ns` (setns moves only that thread).
pub(super) fn in_netns<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let path = ns.path();
    thread::spawn(move || -> Result<T> {
        let file = File::open(&path).with_context(|| format!("open {}", path.display()))?;
        // SAFETY: setns on a valid descriptor; it affects only this thread.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!(
                "setns {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            );
        }
        f()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("namespace thread panicked"))?
}

/// Resource use of a reaped child.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Usage {
    pub(super) cpu_secs: f64,
    /// Peak resident memory (filled from VmHWM by the caller where it matters).
    pub(super) max_rss_kib: u64,
}

/// A child process killed on drop unless it was reaped.
pub(super) struct Proc {
    pub(super) child: Child,
    what: String,
    reaped: bool,
}

impl Proc {
    pub(super) fn spawn(cmd: &mut Command, what: &str) -> Result<Proc> {
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {what}: {cmd:?}"))?;
        Ok(Proc {
            child,
            what: what.into(),
            reaped: false,
        })
    }

    pub(super) fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    fn signal(&self, sig: libc::c_int) {
        if !self.reaped {
            // SAFETY: our own unreaped child, so the pid is not reused.
            unsafe { libc::kill(self.pid(), sig) };
        }
    }

    /// Waits (at most `timeout`, then SIGKILL) and returns the exit code and resource use.
    fn wait(&mut self, timeout: Duration) -> Result<(i32, Usage)> {
        let end = Instant::now() + timeout;
        loop {
            let mut status = 0;
            // SAFETY: rusage is plain data, filled by the kernel.
            let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: wait4 on our own child.
            let r = unsafe { libc::wait4(self.pid(), &mut status, libc::WNOHANG, &mut ru) };
            if r == self.pid() {
                self.reaped = true;
                let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
                let code = if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else {
                    128 + libc::WTERMSIG(status)
                };
                return Ok((
                    code,
                    Usage {
                        cpu_secs: tv(ru.ru_utime) + tv(ru.ru_stime),
                        max_rss_kib: ru.ru_maxrss as u64,
                    },
                ));
            }
            if r < 0 {
                bail!("wait4 {}: {}", self.what, std::io::Error::last_os_error());
            }
            if Instant::now() > end {
                self.signal(libc::SIGKILL);
                bail!("{} did not exit within {timeout:?}", self.what);
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGINT, then wait.
    pub(super) fn stop(&mut self) -> Result<(i32, Usage)> {
        self.signal(libc::SIGINT);
        self.wait(Duration::from_secs(30))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("arp-trace-bench-{}-{name}", std::process::id()))
}

/// Removes the bench's temporary files on drop.
pub(super) struct TmpFiles(pub(super) Vec<PathBuf>);

impl TmpFiles {
    pub(super) fn add(&mut self, name: &str) -> PathBuf {
        let p = tmp(name);
        let _ = std::fs::remove_file(&p);
        self.0.push(p.clone());
        p
    }
}

impl Drop for TmpFiles {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A `kB` field of `/proc/<pid>/status` (VmHWM, RssAnon, ...), in KiB.
pub(super) fn status_kib(pid: libc::pid_t, key: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// arp-trace running with a ready file; stdout and stderr go to files.
pub(super) struct Tracer {
    pub(super) proc: Proc,
    stdout: PathBuf,
    stderr: PathBuf,
    /// VmHWM right after the ready file appeared: the start-up peak.
    pub(super) startup_hwm_kib: Option<u64>,
}

impl Tracer {
    pub(super) fn start(
        bin: &Path,
        args: &[&str],
        files: &mut TmpFiles,
        tag: &str,
    ) -> Result<Tracer> {
        let ready = files.add(&format!("{tag}.ready"));
        let stdout = files.add(&format!("{tag}.out"));
        let stderr = files.add(&format!("{tag}.err"));
        let mut proc = Proc::spawn(
            Command::new(bin)
                .args(args)
                .arg("--ready-file")
                .arg(&ready)
                .stdout(File::create(&stdout)?)
                .stderr(File::create(&stderr)?),
            "arp-trace",
        )?;
        let end = Instant::now() + Duration::from_secs(60);
        while !ready.exists() {
            if let Ok(Some(_)) = proc.child.try_wait() {
                proc.reaped = true;
                bail!(
                    "arp-trace {args:?} exited before it was ready: {}",
                    std::fs::read_to_string(&stderr).unwrap_or_default().trim()
                );
            }
            if Instant::now() > end {
                bail!("arp-trace {args:?} not ready after 60 s");
            }
            pause(Duration::from_millis(5))?;
        }
        let startup_hwm_kib = status_kib(proc.pid(), "VmHWM");
        Ok(Tracer {
            proc,
            stdout,
            stderr,
            startup_hwm_kib,
        })
    }

    pub(super) fn stop(mut self) -> Result<(Usage, String, String)> {
        let (code, usage) = self.proc.stop()?;
        let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        if code != 0 {
            bail!("arp-trace exited with {code}: {}", err.trim());
        }
        let out = std::fs::read_to_string(&self.stdout).unwrap_or_default();
        Ok((usage, out, err))
    }
}

fn which(bin: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false)
}

/// The tools the bench drives, installed from Debian packages when missing.
pub(super) fn ensure_tools() -> Result<()> {
    let wanted = [
        ("ip", "iproute2"),
        ("iperf3", "iperf3"),
        ("tcpdump", "tcpdump"),
        ("jq", "jq"),
        ("sysctl", "procps"),
    ];
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(b, _)| !which(b))
        .map(|(_, p)| *p)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !Path::new("/etc/debian_version").exists() {
        bail!(
            "the benchmark needs these tools: {}; install them and run it again",
            missing.join(", ")
        );
    }
    eprintln!("xtask bench: installing {}", missing.join(", "));
    output(
        Command::new("apt-get")
            .args(["update", "-qq"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    output(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    Ok(())
}
