//! Harness for the end-to-end tests: the real `arp-trace` binary, the real kernel, real
//! network namespaces.
//!
//! Everything created here lives in throw-away network namespaces named
//! `at<pid>x<counter><role>`; nothing is created in the root namespace. Namespaces are
//! deleted by [`Netns`]'s `Drop`, also when a test panics.

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub use serde_json::{json, Value};

/// How long to wait for an event that normally arrives in well under 100 ms. The machine is
/// shared and tests run in parallel, so be generous.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(15);

/// How long to wait for the tracer to attach its hooks.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long to wait for the tracer to exit after a signal.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// Multiplier for every timeout in this harness, from `ARP_TRACE_TIMEOUT_SCALE` (default 1).
/// The VM suite runs these tests under software emulation, many times slower than here.
pub fn timeout_scale() -> f64 {
    match std::env::var("ARP_TRACE_TIMEOUT_SCALE") {
        Ok(v) if !v.trim().is_empty() => match v.trim().parse::<f64>() {
            Ok(x) if x.is_finite() && x >= 1.0 => x,
            _ => panic!("ARP_TRACE_TIMEOUT_SCALE={v:?}: expected a number >= 1, e.g. 10"),
        },
        _ => 1.0,
    }
}

/// `d` times [`timeout_scale`]. Every wait in the harness goes through this, so callers pass
/// the unscaled figure.
pub fn scaled(d: Duration) -> Duration {
    d.mul_f64(timeout_scale())
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn next_id() -> u32 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

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

// ---------------------------------------------------------------------------------------------
// Running commands
// ---------------------------------------------------------------------------------------------

/// Run `ip ARGS...`, panic with its stderr if it fails; return its stdout.
pub fn ip(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip {}`: {e}", args.join(" ")));
    if !out.status.success() {
        panic!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Wait for `child` to exit for at most `timeout`; `None` if it is still running.
fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
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

/// Run the tracer with `args` as user/group 65534 (nobody) via `setpriv`.
///
/// If the binary is not reachable by others it is copied to a private 0755 directory. A copy
/// can fail to execute with ETXTBSY while another test thread forks (the child briefly holds
/// the write descriptor), so that case is retried.
pub fn run_unprivileged(args: &[&str]) -> Finished {
    let bin = bin();
    let mut copy_dir = None;
    let exe = if others_can_execute(&bin) {
        bin
    } else {
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
        copy_dir = Some(dir);
        copy
    };
    let mut attempt = 0;
    let f = loop {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&exe)
            .args(args);
        let f = run_to_completion(cmd, Duration::from_secs(30));
        attempt += 1;
        if attempt < 10 && f.stderr.contains("Text file busy") {
            thread::sleep(Duration::from_millis(100));
            continue;
        }
        break f;
    };
    if let Some(dir) = copy_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    f
}

// ---------------------------------------------------------------------------------------------
// Network namespaces
// ---------------------------------------------------------------------------------------------

/// A named network namespace (`ip netns add`), deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Create `at<pid>x<counter><role>`; `role` is a short tag such as `s` or `c3`.
    pub fn new(role: &str) -> Netns {
        let name = format!("at{}x{}{}", std::process::id(), next_id(), role);
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/<name>`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// The namespace's inode number, as the tracer reports it in `netns`.
    pub fn inode(&self) -> u64 {
        std::fs::metadata(self.path())
            .unwrap_or_else(|e| panic!("stat {}: {e}", self.path().display()))
            .ino()
    }

    /// `ip -n <name> ARGS...`
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// The MAC address of `dev` in this namespace (lower case, colon separated).
    pub fn mac(&self, dev: &str) -> String {
        let out = self.ip(&["-br", "link", "show", "dev", dev]);
        // "eth3@if2   UP   46:18:e9:b8:ae:40 <BROADCAST,MULTICAST,UP,LOWER_UP>"
        let mac = out
            .split_whitespace()
            .nth(2)
            .unwrap_or_else(|| panic!("no MAC in `ip -br link show {dev}`: {out:?}"));
        assert!(is_mac(mac), "not a MAC address: {mac:?} (from {out:?})");
        mac.to_string()
    }

    /// The interface index of `dev` in this namespace.
    pub fn ifindex(&self, dev: &str) -> u64 {
        let out = self.ip(&["-o", "link", "show", "dev", dev]);
        // "2: eth1@if3: <BROADCAST,..."
        out.split(':')
            .next()
            .and_then(|i| i.trim().parse().ok())
            .unwrap_or_else(|| panic!("no ifindex in `ip -o link show {dev}`: {out:?}"))
    }

    /// Wait until `dev` has carrier (LOWER_UP).
    pub fn wait_link_up(&self, dev: &str) {
        let deadline = Instant::now() + scaled(Duration::from_secs(10));
        loop {
            let out = self.ip(&["link", "show", "dev", dev]);
            if out.contains("LOWER_UP") {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{}/{dev} not up after {:?}: {out}",
                    self.name,
                    scaled(Duration::from_secs(10))
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// `ip -n <name> neigh flush all`.
    pub fn flush_neigh(&self) {
        self.ip(&["neigh", "flush", "all"]);
    }

    /// Send one UDP datagram from inside this namespace, from `src` (or an unbound socket)
    /// to `dst`.
    pub fn send_udp(&self, src: Option<Ipv4Addr>, dst: SocketAddrV4) {
        self.send_udp_many(src, &[dst]);
    }

    /// Send one UDP datagram to each of `dsts` from one socket inside this namespace.
    pub fn send_udp_many(&self, src: Option<Ipv4Addr>, dsts: &[SocketAddrV4]) {
        send_udp_in(&self.path(), src, dsts);
    }

    /// Run `f` on a thread that has entered this namespace.
    pub fn run_in<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = self.path();
        thread::spawn(move || {
            // setns(CLONE_NEWNET) only moves this thread; it ends with the thread.
            enter_netns(&path);
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// Write `value` to `/proc/sys/<key>` as seen from inside this namespace (`key` with
    /// slashes, e.g. `net/ipv4/neigh/eth3/retrans_time_ms`): net sysctls are per namespace.
    pub fn sysctl(&self, key: &str, value: &str) {
        let file = Path::new("/proc/sys").join(key);
        let (name, value) = (self.name.clone(), value.to_string());
        self.run_in(move || {
            std::fs::write(&file, &value)
                .unwrap_or_else(|e| panic!("write {value} to {} in {name}: {e}", file.display()));
            let back = std::fs::read_to_string(&file).unwrap_or_default();
            assert_eq!(
                back.trim(),
                value,
                "{} in {name} after writing",
                file.display()
            );
        })
    }

    /// The kernel's state for neighbour `addr` on `dev` (`REACHABLE`, `STALE`, ...), if any.
    pub fn neigh_state(&self, addr: &str, dev: &str) -> Option<String> {
        let out = self.ip(&["neigh", "show", "to", addr, "dev", dev]);
        // "198.51.100.20 lladdr 2e:09:89:e2:31:01 REACHABLE"
        out.split_whitespace().last().map(str::to_string)
    }

    /// Wait until neighbour `addr` on `dev` is in `state`.
    pub fn wait_neigh_state(&self, addr: &str, dev: &str, state: &str) {
        let timeout = scaled(EVENT_TIMEOUT);
        let deadline = Instant::now() + timeout;
        loop {
            let now = self.neigh_state(addr, dev);
            if now.as_deref() == Some(state) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{}: neighbour {addr} on {dev} not {state} after {timeout:?}: {now:?}",
                    self.name
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// net.ipv4.conf.<conf>.arp_announce in this namespace.
    pub fn set_announce(&self, conf: &str, level: u8) {
        self.sysctl(
            &format!("net/ipv4/conf/{conf}/arp_announce"),
            &level.to_string(),
        );
    }
}

/// Run `f` on a thread that has entered the network namespace at `ns_path`; panics with
/// `f`'s error.
pub fn in_netns<T: Send + 'static>(
    ns_path: &Path,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> T {
    let path = ns_path.to_path_buf();
    let res = thread::spawn(move || -> Result<T, String> {
        // setns(CLONE_NEWNET) only moves this thread; it ends with the thread.
        enter_netns(&path);
        f()
    })
    .join()
    .expect("namespace thread panicked");
    res.unwrap_or_else(|e| panic!("in namespace {}: {e}", ns_path.display()))
}

/// Send one UDP datagram to each of `dsts` from one socket inside the namespace at `ns_path`,
/// from `src` (or an unbound socket).
pub fn send_udp_in(ns_path: &Path, src: Option<Ipv4Addr>, dsts: &[SocketAddrV4]) {
    let dsts = dsts.to_vec();
    in_netns(ns_path, move || {
        let bind = SocketAddr::V4(SocketAddrV4::new(src.unwrap_or(Ipv4Addr::UNSPECIFIED), 0));
        let sock = UdpSocket::bind(bind).map_err(|e| format!("bind {bind}: {e}"))?;
        for d in &dsts {
            sock.send_to(b"arp-trace-e2e", d)
                .map_err(|e| format!("send_to {d}: {e}"))?;
        }
        Ok(())
    })
}

/// Moves the calling thread into the network namespace at `path`.
fn enter_netns(path: &Path) {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    // SAFETY: plain syscall on a valid fd.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        panic!(
            "setns {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        match Command::new("ip")
            .args(["netns", "del", &self.name])
            .output()
        {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "warning: ip netns del {}: {}",
                self.name,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => eprintln!("warning: ip netns del {}: {e}", self.name),
        }
    }
}

/// Shorthand for a UDP destination (discard port 9).
pub fn udp(addr: &str) -> SocketAddrV4 {
    SocketAddrV4::new(addr.parse().expect("IPv4 address"), 9)
}

/// A lone namespace holding both ends of a veth pair: eth3 (198.51.100.10/24, up) and eth4
/// (no address, up). UDP to any other 198.51.100.x makes the kernel ARP on eth3 with nobody
/// answering: one request now, two retransmits 1 s apart.
pub fn lone(role: &str) -> Netns {
    let ns = Netns::new(role);
    ns.ip(&[
        "link", "add", "eth3", "type", "veth", "peer", "name", "eth4",
    ]);
    ns.ip(&["addr", "add", "198.51.100.10/24", "dev", "eth3"]);
    ns.ip(&["link", "set", "eth3", "up"]);
    ns.ip(&["link", "set", "eth4", "up"]);
    ns.wait_link_up("eth3");
    ns
}

pub const SRV_ETH3_IP: &str = "198.51.100.10";
pub const SRV_ETH5_IP: &str = "203.0.113.10";
pub const C3_IP: &str = "198.51.100.20";
pub const C5_IP: &str = "203.0.113.20";

/// The seed topology:
///
/// ```text
///   c3 eth0 198.51.100.20/24 ── eth3 198.51.100.10/24  srv  eth5 203.0.113.10/24 ── eth0 203.0.113.20/24 c5
/// ```
pub struct Seed {
    pub srv: Netns,
    pub c3: Netns,
    pub c5: Netns,
}

impl Seed {
    pub fn new() -> Seed {
        let srv = Netns::new("s");
        let c3 = Netns::new("c3");
        let c5 = Netns::new("c5");
        veth(
            &srv,
            "eth3",
            "198.51.100.10/24",
            &c3,
            "eth0",
            "198.51.100.20/24",
        );
        veth(
            &srv,
            "eth5",
            "203.0.113.10/24",
            &c5,
            "eth0",
            "203.0.113.20/24",
        );
        Seed { srv, c3, c5 }
    }

    /// Lets c3 answer packets from srv's net-5 address (203.0.113.10) through srv, as a TCP
    /// peer must: c3 only knows 198.51.100.0/24 otherwise.
    pub fn route_c3_to_net5(&self) {
        self.c3
            .ip(&["route", "add", "203.0.113.0/24", "via", SRV_ETH3_IP]);
    }
}

/// A veth pair `a_dev` in `a` and `b_dev` in `b`, with the given addresses, both ends up.
/// The pair is created inside the namespaces: nothing touches the root namespace.
pub fn veth(a: &Netns, a_dev: &str, a_addr: &str, b: &Netns, b_dev: &str, b_addr: &str) {
    a.ip(&[
        "link",
        "add",
        a_dev,
        "type",
        "veth",
        "peer",
        "name",
        b_dev,
        "netns",
        b.name(),
    ]);
    a.ip(&["addr", "add", a_addr, "dev", a_dev]);
    b.ip(&["addr", "add", b_addr, "dev", b_dev]);
    a.ip(&["link", "set", a_dev, "up"]);
    b.ip(&["link", "set", b_dev, "up"]);
    a.wait_link_up(a_dev);
    b.wait_link_up(b_dev);
}

pub const CLIENT_IP: &str = "192.0.2.2";
pub const ROUTER_IN_IP: &str = "192.0.2.1";
pub const ROUTER_OUT_IP: &str = "198.51.100.1";
pub const HOST_IP: &str = "198.51.100.2";

/// A router between two nets, with `ip_forward=1` in the router's namespace only:
///
/// ```text
///   client eth0 192.0.2.2/24 ── eth1 192.0.2.1/24  router  eth2 198.51.100.1/24 ── eth0 198.51.100.2/24 host
/// ```
pub struct Routed {
    pub client: Netns,
    pub router: Netns,
    pub host: Netns,
}

impl Routed {
    pub fn new() -> Routed {
        let client = Netns::new("cl");
        let router = Netns::new("r");
        let host = Netns::new("h");
        veth(
            &router,
            "eth1",
            "192.0.2.1/24",
            &client,
            "eth0",
            "192.0.2.2/24",
        );
        veth(
            &router,
            "eth2",
            "198.51.100.1/24",
            &host,
            "eth0",
            "198.51.100.2/24",
        );
        client.ip(&["route", "add", "default", "via", ROUTER_IN_IP]);
        host.ip(&["route", "add", "default", "via", ROUTER_OUT_IP]);
        router.sysctl("net/ipv4/ip_forward", "1");
        Routed {
            client,
            router,
            host,
        }
    }
}

impl Default for Routed {
    fn default() -> Self {
        Routed::new()
    }
}

impl Default for Seed {
    fn default() -> Self {
        Seed::new()
    }
}

// ---------------------------------------------------------------------------------------------
// Helper processes: a known pid and comm behind the traffic
// ---------------------------------------------------------------------------------------------

/// Set in a child to make [`helper_main`] serve commands instead of returning.
pub const HELPER_ENV: &str = "ARP_TRACE_E2E_HELPER";
const HELPER_NETNS_ENV: &str = "ARP_TRACE_E2E_HELPER_NETNS";
const HELPER_COMM_ENV: &str = "ARP_TRACE_E2E_HELPER_COMM";
/// Name of the (ignored) test through which a test binary re-executes itself as a helper;
/// every test file that uses [`Helper`] must define it as `fn helper_process() {
/// helper_main() }`.
pub const HELPER_ENTRY: &str = "helper_process";
/// Prefix of the helper's answers on stdout (libtest prints its own lines there too).
const ANSWER: &str = "@@ ";

/// A child process that sends traffic on command from inside a namespace, under a pid and a
/// comm the test knows. It is the test executable itself, re-executed (no python, no nc:
/// the VM guests only have busybox and iproute2).
pub struct Helper {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    answers: std::sync::mpsc::Receiver<String>,
    comm: String,
}

impl Helper {
    /// Start a helper in `ns` named `comm` (at most 15 bytes: the kernel's TASK_COMM_LEN).
    pub fn spawn(ns: &Netns, comm: &str) -> Helper {
        assert!(comm.len() <= 15, "comm {comm:?} longer than 15 bytes");
        let exe = std::env::current_exe().expect("current_exe");
        let mut child = Command::new(&exe)
            .args([HELPER_ENTRY, "--exact", "--include-ignored", "--nocapture"])
            .args(["--test-threads=1", "-q"])
            .env(HELPER_ENV, "1")
            .env(HELPER_NETNS_ENV, ns.path())
            .env(HELPER_COMM_ENV, comm)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn helper {}: {e}", exe.display()));
        let out = child.stdout.take().unwrap();
        let (tx, answers) = std::sync::mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Some(a) = line.strip_prefix(ANSWER) {
                    if tx.send(a.to_string()).is_err() {
                        break;
                    }
                }
            }
        });
        let mut h = Helper {
            stdin: child.stdin.take(),
            child,
            answers,
            comm: comm.to_string(),
        };
        let hello = h.answer("start");
        assert_eq!(hello, format!("ready {}", h.pid()), "helper's first answer");
        h
    }

    /// The helper's pid, as the tracer should report it.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn comm(&self) -> &str {
        &self.comm
    }

    fn answer(&mut self, what: &str) -> String {
        let timeout = scaled(EVENT_TIMEOUT);
        match self.answers.recv_timeout(timeout) {
            Ok(a) => a,
            Err(e) => panic!(
                "helper {}[{}]: no answer to {what:?} ({e})",
                self.comm,
                self.pid()
            ),
        }
    }

    /// Send one command line; return the answer (panics on an `err` answer).
    pub fn cmd(&mut self, line: &str) -> String {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("helper stdin");
        writeln!(stdin, "{line}")
            .and_then(|_| stdin.flush())
            .unwrap_or_else(|e| panic!("helper {}: writing {line:?}: {e}", self.comm));
        let a = self.answer(line);
        if a.starts_with("err") {
            panic!("helper {}[{}]: {line:?} failed: {a}", self.comm, self.pid());
        }
        a
    }

    /// The number after the first word of an answer (`ok 41000` -> 41000).
    fn port_of(answer: &str) -> u16 {
        answer
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in helper answer {answer:?}"))
    }

    /// One UDP datagram of [`HELPER_PAYLOAD`] from `src` (port 0: any) to `dst`, with skb
    /// mark `mark`; returns the source port. The socket stays open.
    pub fn udp(&mut self, src: SocketAddrV4, dst: SocketAddrV4, mark: u32) -> u16 {
        Self::port_of(&self.cmd(&format!("udp {src} {dst} {mark}")))
    }

    /// TCP connect from `src` (port 0: any) to `dst`; returns the source port, and whether the
    /// peer refused (RST) rather than accepted.
    pub fn connect(&mut self, src: SocketAddrV4, dst: SocketAddrV4) -> (u16, bool) {
        let a = self.cmd(&format!("connect {src} {dst}"));
        (Self::port_of(&a), a.starts_with("refused"))
    }

    /// Listen for TCP on `addr`.
    pub fn listen(&mut self, addr: SocketAddrV4) {
        self.cmd(&format!("listen {addr}"));
    }

    /// Accept one connection; returns the peer's port.
    pub fn accept(&mut self) -> u16 {
        Self::port_of(&self.cmd("accept"))
    }

    /// Write `text` (no spaces) to the connection.
    pub fn send(&mut self, text: &str) {
        self.cmd(&format!("send {text}"));
    }

    /// Read at least `n` bytes from the connection; returns what was read.
    pub fn recv(&mut self, n: usize) -> String {
        let a = self.cmd(&format!("recv {n}"));
        a.strip_prefix("ok ").unwrap_or("").to_string()
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // EOF on stdin ends the helper; kill it if it does not go.
        drop(self.stdin.take());
        if wait_timeout(&mut self.child, scaled(Duration::from_secs(2))).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What each UDP datagram a [`Helper`] sends carries (13 bytes: IP total length 41).
pub const HELPER_PAYLOAD: &[u8] = b"arp-trace-e2e";

/// The body of the `helper_process` entry test: returns at once in a normal test run; in a
/// child spawned by [`Helper::spawn`] it serves commands on stdin and exits at EOF.
pub fn helper_main() {
    if std::env::var_os(HELPER_ENV).is_none() {
        return;
    }
    let code = match serve_helper() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("helper: {e}");
            1
        }
    };
    // Leave before libtest prints its summary.
    std::process::exit(code);
}

fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{ANSWER}{line}");
    let _ = out.flush();
}

fn serve_helper() -> Result<(), String> {
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    let ns = std::env::var_os(HELPER_NETNS_ENV).ok_or("no namespace given")?;
    let comm = std::env::var(HELPER_COMM_ENV).map_err(|_| "no comm given")?;
    // This thread does all the sending: it enters the namespace and carries the name. The
    // main thread is renamed too, since /proc/<pid>/comm (what socket-owner scans read) is
    // the main thread's.
    enter_netns(Path::new(&ns));
    let cname = std::ffi::CString::new(comm.clone()).map_err(|e| e.to_string())?;
    // SAFETY: PR_SET_NAME with a NUL-terminated string of at most 16 bytes.
    if unsafe { libc::prctl(libc::PR_SET_NAME, cname.as_ptr()) } != 0 {
        return Err(format!("prctl: {}", std::io::Error::last_os_error()));
    }
    let main_comm = format!("/proc/self/task/{}/comm", std::process::id());
    std::fs::write(&main_comm, &comm).map_err(|e| format!("write {main_comm}: {e}"))?;
    let io_limit = scaled(EVENT_TIMEOUT);
    let io_timeout = Some(io_limit);

    say(&format!("ready {}", std::process::id()));
    let mut udp_socks = Vec::new();
    let mut listener: Option<TcpListener> = None;
    let mut stream: Option<TcpStream> = None;
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| e.to_string())?;
        let w: Vec<&str> = line.split_whitespace().collect();
        let addr = |i: usize| -> Result<SocketAddrV4, String> {
            w.get(i)
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| format!("bad address in {line:?}"))
        };
        let res: Result<String, String> = (|| match w.first().copied() {
            Some("udp") => {
                let (src, dst) = (addr(1)?, addr(2)?);
                let mark: u32 = w.get(3).and_then(|m| m.parse().ok()).unwrap_or(0);
                let sock = UdpSocket::bind(src).map_err(|e| format!("bind {src}: {e}"))?;
                set_mark(sock.as_raw_fd(), mark)?;
                sock.send_to(HELPER_PAYLOAD, dst)
                    .map_err(|e| format!("send_to {dst}: {e}"))?;
                let port = sock.local_addr().map_err(|e| e.to_string())?.port();
                udp_socks.push(sock);
                Ok(format!("ok {port}"))
            }
            Some("connect") => {
                let (src, dst) = (addr(1)?, addr(2)?);
                let (s, port, refused) = tcp_connect(src, dst, io_limit)?;
                if let Some(s) = s {
                    s.set_read_timeout(io_timeout).map_err(|e| e.to_string())?;
                    stream = Some(s);
                }
                Ok(format!("{} {port}", if refused { "refused" } else { "ok" }))
            }
            Some("listen") => {
                let a = addr(1)?;
                listener = Some(TcpListener::bind(a).map_err(|e| format!("listen {a}: {e}"))?);
                Ok("ok".into())
            }
            Some("accept") => {
                let l = listener.as_ref().ok_or("accept before listen")?;
                let (s, peer) = l.accept().map_err(|e| format!("accept: {e}"))?;
                s.set_read_timeout(io_timeout).map_err(|e| e.to_string())?;
                stream = Some(s);
                Ok(format!("ok {}", peer.port()))
            }
            Some("send") => {
                let s = stream.as_mut().ok_or("send without a connection")?;
                s.write_all(w.get(1).unwrap_or(&"").as_bytes())
                    .map_err(|e| format!("write: {e}"))?;
                Ok("ok".into())
            }
            Some("recv") => {
                let s = stream.as_mut().ok_or("recv without a connection")?;
                let want: usize = w.get(1).and_then(|n| n.parse().ok()).unwrap_or(1);
                let mut got = Vec::new();
                let mut buf = [0u8; 512];
                while got.len() < want {
                    let n = s.read(&mut buf).map_err(|e| format!("read: {e}"))?;
                    if n == 0 {
                        return Err("connection closed".into());
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                Ok(format!("ok {}", String::from_utf8_lossy(&got)))
            }
            _ => Err(format!("unknown command {line:?}")),
        })();
        match res {
            Ok(a) => say(&a),
            Err(e) => say(&format!("err {e}")),
        }
    }
    Ok(())
}

fn set_mark(fd: libc::c_int, mark: u32) -> Result<(), String> {
    if mark == 0 {
        return Ok(());
    }
    // SAFETY: setsockopt with a u32 option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_MARK,
            &mark as *const u32 as *const libc::c_void,
            std::mem::size_of::<u32>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(format!(
            "SO_MARK {mark}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn sockaddr_in(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.ip().octets()),
        },
        sin_zero: [0; 8],
    }
}

/// TCP connect from a chosen source (std cannot bind before connecting). Returns the stream
/// (None if refused), the source port, and whether it was refused.
fn tcp_connect(
    src: SocketAddrV4,
    dst: SocketAddrV4,
    timeout: Duration,
) -> Result<(Option<std::net::TcpStream>, u16, bool), String> {
    use std::os::fd::FromRawFd;
    let err = |what: &str| format!("{what}: {}", std::io::Error::last_os_error());
    // SAFETY: socket(2); the fd is owned by the TcpStream below or closed on every error path
    // through that TcpStream's drop.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(err("socket"));
    }
    // SAFETY: fd is a fresh socket we own.
    let stream = unsafe { std::net::TcpStream::from_raw_fd(fd) };
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?; // SO_SNDTIMEO also bounds connect(2)
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let sa = sockaddr_in(src);
    // SAFETY: valid sockaddr_in of the given length.
    if unsafe { libc::bind(fd, &sa as *const _ as *const libc::sockaddr, len) } != 0 {
        return Err(err(&format!("bind {src}")));
    }
    let port = match stream.local_addr().map_err(|e| e.to_string())? {
        SocketAddr::V4(a) => a.port(),
        SocketAddr::V6(a) => a.port(),
    };
    let da = sockaddr_in(dst);
    // SAFETY: valid sockaddr_in of the given length.
    if unsafe { libc::connect(fd, &da as *const _ as *const libc::sockaddr, len) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ECONNREFUSED) {
            return Ok((None, port, true));
        }
        return Err(format!("connect {src} -> {dst}: {e}"));
    }
    Ok((Some(stream), port, false))
}

// ---------------------------------------------------------------------------------------------
// The tracer
// ---------------------------------------------------------------------------------------------

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
        let ready_file = std::env::temp_dir().join(format!(
            "arp-trace-e2e-{}-{}.ready",
            std::process::id(),
            next_id()
        ));
        let _ = std::fs::remove_file(&ready_file);
        let mut cmd = Command::new(bin());
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
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", bin().display()));
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

    /// stdout lines so far, parsed as JSON (panics on a line that is not JSON).
    pub fn json(&self) -> Vec<Value> {
        parse_json_lines(&self.lines().join("\n"))
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
                    "waited {timeout:?} for {n} matching event(s), got {}; stdout:\n{}\nstderr:\n{}",
                    found.len(),
                    self.lines().join("\n"),
                    self.stderr()
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
                panic!(
                    "waited {timeout:?} for a matching line; stdout:\n{}\nstderr:\n{}",
                    self.lines().join("\n"),
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(25));
        }
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
            None => panic!(
                "arp-trace {:?} did not exit within {timeout:?}; stdout:\n{}\nstderr:\n{}",
                self.args,
                self.lines().join("\n"),
                self.stderr()
            ),
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

/// Describe an exit status, naming the signal if it was killed by one.
pub fn describe(status: &ExitStatus) -> String {
    match status.signal() {
        Some(s) => format!("killed by signal {s}"),
        None => format!("{status}"),
    }
}

/// Parse JSON Lines (empty lines skipped); panics on a line that is not JSON.
pub fn parse_json_lines(s: &str) -> Vec<Value> {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}"))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Event helpers
// ---------------------------------------------------------------------------------------------

/// The string field `key` of `v` (panics if missing or not a string).
pub fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("event has no string field {key:?}: {v}"))
}

pub fn is_request(v: &Value) -> bool {
    v["op"] == "request"
}

pub fn is_reply(v: &Value) -> bool {
    v["op"] == "reply"
}

/// Event from namespace `ns` (by name).
pub fn from_ns(v: &Value, ns: &Netns) -> bool {
    v["netns_name"] == ns.name()
}

/// Check the fields of the JSON object `v` against `expected` (a missing field counts as
/// null); report every mismatch at once, with the whole object.
#[track_caller]
pub fn assert_fields(v: &Value, expected: &[(&str, Value)]) {
    let wrong: Vec<String> = expected
        .iter()
        .filter(|(k, want)| v.get(*k).unwrap_or(&Value::Null) != want)
        .map(|(k, want)| {
            format!(
                "{k}: got {}, expected {want}",
                v.get(*k).unwrap_or(&Value::Null)
            )
        })
        .collect();
    assert!(wrong.is_empty(), "{}\nin {v}", wrong.join("\n"));
}

/// `xx:xx:xx:xx:xx:xx`, lower-case hex.
pub fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts.iter().all(|p| {
            p.len() == 2
                && p.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

fn mac_hex(mac: &str) -> String {
    mac.replace(':', "")
}

fn ip_hex(ip: &str) -> String {
    let a: Ipv4Addr = ip
        .parse()
        .unwrap_or_else(|_| panic!("not an IPv4 address: {ip}"));
    a.octets().iter().map(|b| format!("{b:02x}")).collect()
}

/// Check that the event's `frame` hex (Ethernet + ARP for IPv4 over Ethernet) agrees with its
/// decoded fields.
pub fn assert_frame_consistent(v: &Value) {
    let frame = s(v, "frame");
    assert!(frame.len() >= 84, "frame too short for Ethernet+ARP: {v}");
    assert!(
        frame.bytes().all(|b| b.is_ascii_hexdigit()),
        "frame is not hex: {v}"
    );
    let f = frame.to_ascii_lowercase();
    let op = if is_request(v) { "0001" } else { "0002" };
    assert_eq!(&f[0..12], mac_hex(s(v, "eth_dst")), "eth dst in frame: {v}");
    assert_eq!(
        &f[12..24],
        mac_hex(s(v, "sender_mac")),
        "eth src in frame: {v}"
    );
    assert_eq!(&f[24..28], "0806", "ethertype: {v}");
    assert_eq!(&f[28..40], "000108000604", "ARP htype/ptype/hlen/plen: {v}");
    assert_eq!(&f[40..44], op, "ARP op: {v}");
    assert_eq!(&f[44..56], mac_hex(s(v, "sender_mac")), "ARP sha: {v}");
    assert_eq!(&f[56..64], ip_hex(s(v, "sender_ip")), "ARP spa: {v}");
    assert_eq!(&f[64..76], mac_hex(s(v, "target_mac")), "ARP tha: {v}");
    assert_eq!(&f[76..84], ip_hex(s(v, "target_ip")), "ARP tpa: {v}");
}

/// Seconds since midnight of an RFC 3339 time `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`-like string
/// (the offset is ignored; only differences between close timestamps are meaningful).
pub fn time_of_day_secs(t: &str) -> f64 {
    let (_, rest) = t
        .split_once('T')
        .unwrap_or_else(|| panic!("not RFC 3339: {t}"));
    let end = rest.find(['Z', '+', '-']).unwrap_or(rest.len());
    let hms = &rest[..end];
    let mut it = hms.split(':');
    let h: f64 = it
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("bad time {t}"));
    let m: f64 = it
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("bad time {t}"));
    let sec: f64 = it
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("bad time {t}"));
    h * 3600.0 + m * 60.0 + sec
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
