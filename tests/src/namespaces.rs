//! Network namespaces: [`Netns`] (created with a unique name, deleted on drop), entering one
//! on a thread, sending UDP from inside one, and veth pairs between two.
//!
//! Creating a namespace, `ip` in it, running code on a thread inside it and writing its
//! sysctls each have a fallible core (`try_*`, returning the error) under the panicking form
//! the tests use. `cargo xtask bench` uses the cores, so that namespaces are made, entered
//! and deleted by this code alone.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};

use crate::commands::try_ip;
use crate::{is_mac, next_id, scaled, EVENT_TIMEOUT};

/// A named network namespace (`ip netns add`), deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Create `at<pid>x<counter><role>`; `role` is a short tag such as `s` or `c3`.
    pub fn new(role: &str) -> Netns {
        Netns::try_with_prefix("at", role).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Create `<prefix><pid>x<counter><role>`, lo up; the error says what [`Netns::new`]'s
    /// panic would. The prefix tells in `ip netns` whose namespace it is (the tests' are `at`,
    /// the bench's `xb`); pid and counter keep names unique between concurrent processes.
    pub fn try_with_prefix(prefix: &str, role: &str) -> Result<Netns> {
        let name = format!("{prefix}{}x{}{role}", std::process::id(), next_id());
        try_ip(&["netns", "add", &name])?;
        // From here on, an error drops `ns`, which deletes the namespace again.
        let ns = Netns { name };
        ns.try_ip(&["link", "set", "lo", "up"])?;
        // No duplicate address detection for the link-local addresses of the devices made
        // here: its solicitations would land among the ARP a test counts. The IPv6 tests turn
        // it on where they trace it.
        ns.try_sysctl("net/ipv6/conf/default/accept_dad", "0")?;
        Ok(ns)
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
        self.try_ip(args).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// [`Netns::ip`], returning the error instead of panicking.
    pub fn try_ip(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        try_ip(&all)
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

    /// Send one UDP datagram from inside this namespace, from `src` (or an unbound socket)
    /// to port 9 of the IPv6 address `dst`.
    pub fn send_udp6(&self, src: Option<&str>, dst: &str) {
        let src: Ipv6Addr = src.map_or(Ipv6Addr::UNSPECIFIED, |a| a.parse().expect("IPv6"));
        let dst = SocketAddrV6::new(dst.parse().expect("IPv6 address"), 9, 0, 0);
        self.run_in(move || {
            let bind = SocketAddr::V6(SocketAddrV6::new(src, 0, 0, 0));
            let sock = UdpSocket::bind(bind).unwrap_or_else(|e| panic!("bind {bind}: {e}"));
            sock.send_to(b"arp-trace-e2e", dst)
                .unwrap_or_else(|e| panic!("send_to {dst}: {e}"));
        })
    }

    /// The IPv6 addresses of `dev` of `scope` (`link`, `global`), as `ip -6 addr` lists them,
    /// without prefix lengths.
    pub fn addrs6(&self, dev: &str, scope: &str) -> Vec<String> {
        let out = self.ip(&["-6", "-o", "addr", "show", "dev", dev, "scope", scope]);
        // "3: eth3    inet6 fe80::.../64 scope link \       valid_lft forever ..."
        out.lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                w.find(|x| *x == "inet6")?;
                Some(w.next()?.split('/').next()?.to_string())
            })
            .collect()
    }

    /// The one link-local address of `dev`, once it is usable (not tentative).
    pub fn link_local(&self, dev: &str) -> String {
        let deadline = Instant::now() + scaled(EVENT_TIMEOUT);
        loop {
            let out = self.ip(&["-6", "-o", "addr", "show", "dev", dev, "scope", "link"]);
            let ll = self.addrs6(dev, "link");
            if ll.len() == 1 && !out.contains("tentative") {
                return ll[0].clone();
            }
            if Instant::now() >= deadline {
                panic!("{}/{dev}: no usable link-local address: {out}", self.name);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Run `f` on a thread that has entered this namespace.
    pub fn run_in<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.try_run_in(move || Ok(f()))
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Run `f` on a thread that has entered this namespace; an error if the thread cannot
    /// enter it, else `f`'s result. A panic in `f` goes on in the caller.
    pub fn try_run_in<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        try_in_netns(&self.path(), f)
    }

    /// Write `value` to `/proc/sys/<key>` as seen from inside this namespace (`key` with
    /// slashes, e.g. `net/ipv4/neigh/eth3/retrans_time_ms`): net sysctls are per namespace.
    pub fn sysctl(&self, key: &str, value: &str) {
        let back = self
            .try_sysctl(key, value)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(
            back,
            value,
            "{} in {} after writing",
            Path::new("/proc/sys").join(key).display(),
            self.name
        );
    }

    /// [`Netns::sysctl`] without the check: writes, and returns what reading the file back
    /// gives (trimmed; empty if unreadable). A caller that writes a time in ms may read back
    /// the whole jiffies the kernel rounded it to.
    pub fn try_sysctl(&self, key: &str, value: &str) -> Result<String> {
        let file = Path::new("/proc/sys").join(key);
        let (name, value) = (self.name.clone(), value.to_string());
        self.try_run_in(move || {
            std::fs::write(&file, &value)
                .map_err(|e| anyhow!("write {value} to {} in {name}: {e}", file.display()))?;
            let back = std::fs::read_to_string(&file).unwrap_or_default();
            Ok(back.trim().to_string())
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
    try_in_netns(ns_path, move || f().map_err(anyhow::Error::msg))
        .unwrap_or_else(|e| panic!("in namespace {}: {e:#}", ns_path.display()))
}

/// The one place a thread enters a namespace: runs `f` on a new thread that has entered the
/// network namespace at `ns_path`. An error if it cannot enter, else `f`'s result; a panic in
/// `f` goes on in the caller, as if `f` had run there.
pub(crate) fn try_in_netns<T: Send + 'static>(
    ns_path: &Path,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let path = ns_path.to_path_buf();
    thread::spawn(move || -> Result<T> {
        // setns(CLONE_NEWNET) only moves this thread; it ends with the thread.
        enter_netns(&path)?;
        f()
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p))
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
pub(crate) fn enter_netns(path: &Path) -> Result<()> {
    let f = std::fs::File::open(path).map_err(|e| anyhow!("open {}: {e}", path.display()))?;
    // SAFETY: plain syscall on a valid fd.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!(
            "setns {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
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

/// A veth pair `a_dev` in `a` and `b_dev` in `b` with one IPv6 address each (`ADDR/64`,
/// `nodad`: usable at once), both ends up. Created inside the namespaces.
pub fn veth6(a: &Netns, a_dev: &str, a_addr: &str, b: &Netns, b_dev: &str, b_addr: &str) {
    let (a_addr, b_addr) = (format!("{a_addr}/64"), format!("{b_addr}/64"));
    pair(
        a,
        a_dev,
        &["-6", "addr", "add", &a_addr, "dev", a_dev, "nodad"],
        b,
        b_dev,
        &["-6", "addr", "add", &b_addr, "dev", b_dev, "nodad"],
    );
}

/// A veth pair `a_dev` in `a` and `b_dev` in `b`, with the given addresses, both ends up.
/// The pair is created inside the namespaces: nothing touches the root namespace.
pub fn veth(a: &Netns, a_dev: &str, a_addr: &str, b: &Netns, b_dev: &str, b_addr: &str) {
    pair(
        a,
        a_dev,
        &["addr", "add", a_addr, "dev", a_dev],
        b,
        b_dev,
        &["addr", "add", b_addr, "dev", b_dev],
    );
}

/// A veth pair whose `port` end in `br` is enslaved to `bridge` (no address) and whose
/// `dev` end in `host` has `addr`; both ends up.
pub fn bridge_port(br: &Netns, bridge: &str, port: &str, host: &Netns, dev: &str, addr: &str) {
    pair(
        br,
        port,
        &["link", "set", port, "master", bridge],
        host,
        dev,
        &["addr", "add", addr, "dev", dev],
    );
}

/// The pair, each end's address (the `ip` arguments that add it), both ends up.
fn pair(a: &Netns, a_dev: &str, a_addr: &[&str], b: &Netns, b_dev: &str, b_addr: &[&str]) {
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
    a.ip(a_addr);
    b.ip(b_addr);
    a.ip(&["link", "set", a_dev, "up"]);
    b.ip(&["link", "set", b_dev, "up"]);
    a.wait_link_up(a_dev);
    b.wait_link_up(b_dev);
}
