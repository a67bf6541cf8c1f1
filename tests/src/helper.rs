//! Helper processes: the test executable re-executed inside a namespace under a chosen
//! comm, sending UDP, connecting and serving TCP on command, so the traffic has a pid and a
//! comm the test knows.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use crate::commands::wait_timeout;
use crate::namespaces::enter_netns;
use crate::{scaled, Netns, EVENT_TIMEOUT};

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

    /// Writes an ARP request (who-has `target` tell `sender`) on `dev` through a packet socket.
    pub fn arp(&mut self, dev: &str, sender: &str, target: &str) {
        let a = self.cmd(&format!("arp {dev} {sender} {target}"));
        assert_eq!(a, "ok", "helper arp: {a}");
    }

    /// The same from the source MAC `mac`: with `sender == target`, the gratuitous request
    /// a failover (keepalived, arping -U) announces an address with.
    pub fn arp_from(&mut self, dev: &str, sender: &str, target: &str, mac: &str) {
        let a = self.cmd(&format!("arp {dev} {sender} {target} {mac}"));
        assert_eq!(a, "ok", "helper arp: {a}");
    }

    /// TCP connect from `src` (port 0: any) to `dst`; returns the source port, and whether the
    /// peer refused (RST) rather than accepted.
    pub fn connect(&mut self, src: SocketAddrV4, dst: SocketAddrV4) -> (u16, bool) {
        let a = self.cmd(&format!("connect {src} {dst}"));
        (Self::port_of(&a), a.starts_with("refused"))
    }

    /// Renames the helper (its sending thread and its main thread, whose name /proc shows)
    /// to `comm`, which need not be UTF-8: at most 15 bytes, no NUL.
    pub fn rename(&mut self, comm: &[u8]) {
        let hex: String = comm.iter().map(|b| format!("{b:02x}")).collect();
        self.cmd(&format!("comm {hex}"));
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
    enter_netns(Path::new(&ns)).unwrap_or_else(|e| panic!("{e:#}"));
    set_comm(comm.as_bytes())?;
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
            Some("comm") => {
                let hex = w.get(1).copied().unwrap_or("");
                let bytes = (0..hex.len() / 2)
                    .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("x"), 16))
                    .collect::<Result<Vec<u8>, _>>()
                    .map_err(|e| format!("bad hex {hex:?}: {e}"))?;
                set_comm(&bytes)?;
                Ok("ok".into())
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
            Some("arp") => {
                let dev = w.get(1).copied().ok_or("arp needs a device")?;
                let ip = |i: usize| -> Result<std::net::Ipv4Addr, String> {
                    w.get(i)
                        .and_then(|a| a.parse().ok())
                        .ok_or_else(|| format!("bad address in {line:?}"))
                };
                // An optional source MAC (`02:00:00:00:00:01`); a fixed one otherwise.
                let smac = match w.get(4) {
                    Some(m) => {
                        let b: Vec<u8> = m
                            .split(':')
                            .filter_map(|x| u8::from_str_radix(x, 16).ok())
                            .collect();
                        Some(<[u8; 6]>::try_from(b).map_err(|_| format!("bad MAC in {line:?}"))?)
                    }
                    None => None,
                };
                send_raw_arp(dev, ip(2)?, ip(3)?, smac)?;
                Ok("ok".into())
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

/// Writes one broadcast ARP request (who-has `target` tell `sender`) on `dev` through an
/// AF_PACKET socket, as arping does: the kernel only transmits it.
fn send_raw_arp(
    dev: &str,
    sender: std::net::Ipv4Addr,
    target: std::net::Ipv4Addr,
    smac: Option<[u8; 6]>,
) -> Result<(), String> {
    let cdev = std::ffi::CString::new(dev).map_err(|e| e.to_string())?;
    // SAFETY: a NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(cdev.as_ptr()) };
    if ifindex == 0 {
        return Err(format!("no device {dev}"));
    }
    let proto = (libc::ETH_P_ARP as u16).to_be();
    // SAFETY: socket(2); the descriptor is owned and closed below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto as libc::c_int) };
    if fd < 0 {
        return Err(format!(
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: fd is fresh and ours.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let smac = smac.unwrap_or([0x02, 0, 0, 0, 0xbe, 0xef]);
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&smac);
    frame.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    frame.extend_from_slice(&smac);
    frame.extend_from_slice(&sender.octets());
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&target.octets());
    // SAFETY: sockaddr_ll is plain data.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_protocol = proto;
    sa.sll_ifindex = ifindex as i32;
    sa.sll_halen = 6;
    sa.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    // SAFETY: sends a valid buffer to a valid sockaddr_ll of its size.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&sa as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if n < 0 {
        return Err(format!(
            "send ARP on {dev}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Names the calling thread and the main thread `comm` (raw bytes, as the kernel keeps them).
fn set_comm(comm: &[u8]) -> Result<(), String> {
    let cname = std::ffi::CString::new(comm).map_err(|e| e.to_string())?;
    // SAFETY: PR_SET_NAME with a NUL-terminated string (the kernel keeps 15 bytes of it).
    if unsafe { libc::prctl(libc::PR_SET_NAME, cname.as_ptr()) } != 0 {
        return Err(format!("prctl: {}", std::io::Error::last_os_error()));
    }
    let main_comm = format!("/proc/self/task/{}/comm", std::process::id());
    std::fs::write(&main_comm, comm).map_err(|e| format!("write {main_comm}: {e}"))
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
