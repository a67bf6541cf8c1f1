//! Processes, namespaces and interruption: Ctrl-C handling, children killed on drop, the
//! tracer with its ready file, temporary files, and the bench's use of the e2e harness's
//! network namespaces.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub(super) use arp_trace_e2e::Netns;

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

pub(super) use crate::provision::output;

/// A throw-away namespace for one measurement, with IPv6 off: the e2e harness's [`Netns`],
/// named `xb<pid>x<n><role>` and deleted on drop, which also runs when an error or Ctrl-C
/// (see [`catch_interrupt`]) unwinds the bench.
pub(super) fn netns(role: &str) -> Result<Netns> {
    let ns = Netns::try_with_prefix("xb", role)?;
    // IPv6 autoconfiguration would add frames of its own to the captures.
    ns.try_sysctl("net/ipv6/conf/all/disable_ipv6", "1")?;
    ns.try_sysctl("net/ipv6/conf/default/disable_ipv6", "1")?;
    Ok(ns)
}

/// What the bench needs of a namespace beyond the harness's [`Netns`].
pub(super) trait NetnsExt {
    /// A command run inside the namespace.
    fn exec(&self, prog: &str) -> Command;

    /// Waits for carrier on `dev`; unlike the harness's wait, Ctrl-C cuts it short.
    fn wait_up(&self, dev: &str) -> Result<()>;
}

impl NetnsExt for Netns {
    fn exec(&self, prog: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.name(), prog]);
        c
    }

    fn wait_up(&self, dev: &str) -> Result<()> {
        let end = Instant::now() + Duration::from_secs(10);
        while !self
            .try_ip(&["link", "show", "dev", dev])?
            .contains("LOWER_UP")
        {
            if Instant::now() > end {
                bail!("{}/{dev} has no carrier after 10 s", self.name());
            }
            pause(Duration::from_millis(20))?;
        }
        Ok(())
    }
}

/// Resource use of a reaped child.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Usage {
    pub(super) cpu_secs: f64,
    /// Of which system time: the kernel's work on the process's behalf (its reads of the
    /// ring and writes of the output, page faults).
    pub(super) sys_secs: f64,
    /// Peak resident memory (filled from VmHWM by the caller where it matters).
    pub(super) max_rss_kib: u64,
    /// Voluntary context switches: how often the process blocked, i.e. woke up again.
    pub(super) wakeups: u64,
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
                        sys_secs: tv(ru.ru_stime),
                        max_rss_kib: ru.ru_maxrss as u64,
                        wakeups: ru.ru_nvcsw as u64,
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

/// CPU seconds (user + system, and system alone; all threads) a running process has used so
/// far, from `/proc/<pid>/stat`: unlike wait4's figure, available before it exits.
pub(super) fn cpu_secs_so_far(pid: libc::pid_t) -> Option<(f64, f64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // SAFETY: no failure mode.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let (user, sys) = stat_ticks(&text)?;
    Some(((user + sys) as f64 / hz, sys as f64 / hz))
}

/// utime and stime (fields 14 and 15) of a `/proc/<pid>/stat` line, in clock ticks. The
/// command name (field 2) may hold spaces and parentheses, so fields are counted after its
/// last `)`.
fn stat_ticks(text: &str) -> Option<(u64, u64)> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_ticks_from_proc_stat() {
        let t = "4242 (arp (trace) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 150 27 0 0 20 0 3 0 \
                 100 1000000 2000 18446744073709551615\n";
        assert_eq!(stat_ticks(t), Some((150, 27)));
        assert_eq!(stat_ticks("4242 (x) S 1"), None);
        assert_eq!(stat_ticks("garbage"), None);
    }
}
