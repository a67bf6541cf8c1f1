//! The facts arp_solicit() consulted, per network namespace: every interface's IPv4 addresses
//! and the arp_announce sysctls, read from inside each namespace by a dedicated thread.
//!
//! Namespaces are reported by inode; one is opened through a path with that inode (an
//! `ip netns` bind mount, or /proc/PID/ns/net of a process in it). The thread setns()'s into it,
//! dumps addresses over rtnetlink and stays subscribed to address and link changes on a socket
//! created there (a socket stays bound to the namespace it was created in). The sysctls have no
//! notification, so they are re-read for every query: /proc/sys/net resolves against the
//! reading thread's namespace. The thread leaves when no bind mount or process holds the
//! namespace any more, so the tracer never keeps a deleted namespace (and its interfaces) alive
//! for more than about a second.
//!
//! Each thread also reports what changes, as [`FactsChange`] records the pipeline hands to its
//! outputs: the namespace's whole state when watching starts (`watched`), every IPv4 address
//! added or removed (found by comparing the dump that each RTNLGRP_IPV4_IFADDR/RTNLGRP_LINK
//! notification triggers with the previous one), and every arp_announce value that changed
//! (`all` and each interface), found when a query re-reads the sysctls and by re-reading them
//! all once a second ([`SYSCTL_EVERY`]), since the kernel announces no sysctl change.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::event::Time;
use crate::explain::{IfAddr, NsFacts};
use crate::netns;

/// Changes no one could be told about because the event loop fell behind.
pub static CHANGES_DROPPED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Namespace facts for a request: `Err` carries a one-line cause.
pub trait FactsSource {
    fn facts(&mut self, netns: u32, ifname: &str) -> Result<NsFacts, String>;
    /// Like `facts`, but read now from the namespace rather than from a cache: for when the
    /// kernel's own view of the egress device disagrees with the cached one.
    fn facts_fresh(&mut self, netns: u32, ifname: &str) -> Result<NsFacts, String> {
        self.facts(netns, ifname)
    }
    /// Changes observed since the last call, oldest first.
    fn changes(&mut self) -> Vec<FactsChange> {
        Vec::new()
    }
}

/// What a [`FactsChange`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// The tracer started watching the namespace: `arp_announce` and `addrs` hold its state.
    Watched,
    /// `ifname` gained `addr`/`prefix_len`.
    AddrAdded,
    /// `ifname` lost `addr`/`prefix_len`.
    AddrRemoved,
    /// `net.ipv4.conf.<conf>.arp_announce` went from `before` (absent: a new interface) to
    /// `after`.
    ArpAnnounce,
}

/// `{"type":"facts_change", ...}`: a change in the facts arp_solicit() consults, so a reader
/// can rebuild a namespace's state at any moment of a trace. Fields not used by a kind are
/// left out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FactsChange {
    #[serde(rename = "type")]
    pub kind: String,
    /// When the tracer observed it (wall clock); the change itself may be a little older.
    pub time: Time,
    pub netns: u32,
    pub netns_name: Option<String>,
    pub change: ChangeKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_len: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary: Option<bool>,
    /// `all` or an interface name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u8>,
    /// `watched`: arp_announce of `all` and of every interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arp_announce: Option<BTreeMap<String, u8>>,
    /// `watched`: every IPv4 address of the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addrs: Option<Vec<IfAddr>>,
}

impl FactsChange {
    pub fn new(netns: u32, change: ChangeKind) -> FactsChange {
        FactsChange {
            kind: "facts_change".into(),
            time: Time(now_nanos()),
            netns,
            netns_name: None,
            change,
            ifname: None,
            addr: None,
            prefix_len: None,
            scope: None,
            secondary: None,
            conf: None,
            before: None,
            after: None,
            arp_announce: None,
            addrs: None,
        }
    }

    fn addr(netns: u32, change: ChangeKind, a: &IfAddr) -> FactsChange {
        FactsChange {
            ifname: Some(a.ifname.clone()),
            addr: Some(a.addr),
            prefix_len: Some(a.prefix_len),
            scope: a.scope,
            secondary: a.secondary,
            ..FactsChange::new(netns, change)
        }
    }

    /// The change without time and place: `arp_announce 0 -> 2`, `+198.51.100.11/24`.
    pub fn describe(&self) -> String {
        let opt = |v: Option<u8>| v.map_or("none".to_string(), |v| v.to_string());
        match self.change {
            ChangeKind::ArpAnnounce => {
                format!("arp_announce {} -> {}", opt(self.before), opt(self.after))
            }
            ChangeKind::AddrAdded | ChangeKind::AddrRemoved => format!(
                "{}{}/{}",
                if self.change == ChangeKind::AddrAdded {
                    '+'
                } else {
                    '-'
                },
                self.addr.map_or("?".to_string(), |a| a.to_string()),
                opt(self.prefix_len)
            ),
            ChangeKind::Watched => {
                let mut parts = Vec::new();
                if let Some(m) = &self.arp_announce {
                    let mut ann: Vec<String> = Vec::new();
                    if let Some(all) = m.get("all") {
                        ann.push(format!("all={all}"));
                    }
                    ann.extend(
                        m.iter()
                            .filter(|(k, _)| *k != "all")
                            .map(|(k, v)| format!("{k}={v}")),
                    );
                    parts.push(format!("arp_announce {}", ann.join(" ")));
                }
                if let Some(addrs) = &self.addrs {
                    let a: Vec<String> = addrs
                        .iter()
                        .map(|a| format!("{}:{}/{}", a.ifname, a.addr, a.prefix_len))
                        .collect();
                    parts.push(format!(
                        "addresses {}",
                        if a.is_empty() {
                            "none".to_string()
                        } else {
                            a.join(" ")
                        }
                    ));
                }
                format!("watching: {}", parts.join("; "))
            }
        }
    }

    /// The interface (or `all`) the change is about; `None` for the whole namespace.
    pub fn subject(&self) -> Option<&str> {
        self.ifname.as_deref().or(self.conf.as_deref())
    }
}

fn now_nanos() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// Namespaces watched at once; the least recently used one is released beyond this.
const MAX_WATCHED: usize = 64;
/// Addresses kept per namespace; more are counted, not stored.
const MAX_ADDRS: usize = 4096;
/// How long the event loop waits for a namespace thread's answer.
const FIRST_ANSWER: Duration = Duration::from_millis(1000);
const ANSWER: Duration = Duration::from_millis(250);
/// How often a namespace thread checks that something still holds its namespace.
const LIVENESS: Duration = Duration::from_millis(500);
/// How long a namespace that could not be opened is not retried.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How often a namespace thread re-reads every arp_announce to notice changes.
pub const SYSCTL_EVERY: Duration = Duration::from_secs(1);
/// Changes kept for the event loop; more are dropped and counted (it drains every second).
const MAX_PENDING_CHANGES: usize = 65_536;

struct Query {
    ifname: String,
    reply: mpsc::SyncSender<Result<NsFacts, String>>,
}

struct Watch {
    tx: mpsc::Sender<Query>,
    wake: Arc<OwnedFd>,
    answered: bool,
    last_used: Instant,
    /// Bumped by the thread whenever it reports a change.
    gen: Arc<AtomicU64>,
    /// Answers by egress interface, valid while `gen` has not moved and for `CACHE_FOR`.
    cache: HashMap<String, (u64, Instant, NsFacts)>,
}

/// How long a cached answer is used at most (changes invalidate it sooner).
const CACHE_FOR: Duration = Duration::from_secs(1);

/// Facts of every namespace events come from, one watcher thread per namespace.
pub struct NsWatchers {
    watches: HashMap<u32, Watch>,
    failed: HashMap<u32, (Instant, String)>,
    changes_tx: mpsc::SyncSender<FactsChange>,
    changes_rx: mpsc::Receiver<FactsChange>,
}

impl Default for NsWatchers {
    fn default() -> Self {
        Self::new()
    }
}

impl NsWatchers {
    pub fn new() -> Self {
        let (changes_tx, changes_rx) = mpsc::sync_channel(MAX_PENDING_CHANGES);
        NsWatchers {
            watches: HashMap::new(),
            failed: HashMap::new(),
            changes_tx,
            changes_rx,
        }
    }

    fn start(&mut self, ino: u32) -> Result<(), String> {
        if let Some((at, why)) = self.failed.get(&ino) {
            if at.elapsed() < RETRY_AFTER {
                return Err(why.clone());
            }
        }
        let res = spawn_watch(ino, self.changes_tx.clone());
        match res {
            Ok(w) => {
                if self.watches.len() >= MAX_WATCHED {
                    if let Some(old) = self
                        .watches
                        .iter()
                        .min_by_key(|(_, w)| w.last_used)
                        .map(|(k, _)| *k)
                    {
                        // Dropping the sender ends that thread.
                        self.watches.remove(&old);
                    }
                }
                self.watches.insert(ino, w);
                self.failed.remove(&ino);
                Ok(())
            }
            Err(e) => {
                if self.failed.len() > 4096 {
                    self.failed.clear();
                }
                self.failed.insert(ino, (Instant::now(), e.clone()));
                Err(e)
            }
        }
    }

    fn ask(&mut self, ino: u32, ifname: &str, fresh: bool) -> Option<Result<NsFacts, String>> {
        let w = self.watches.get_mut(&ino)?;
        w.last_used = Instant::now();
        let gen = w.gen.load(Ordering::Acquire);
        if !fresh {
            if let Some((g, at, f)) = w.cache.get(ifname) {
                if *g == gen && at.elapsed() < CACHE_FOR {
                    return Some(Ok(f.clone()));
                }
            }
        }
        let (reply, rx) = mpsc::sync_channel(1);
        let q = Query {
            ifname: ifname.to_string(),
            reply,
        };
        if w.tx.send(q).is_err() {
            return None;
        }
        wake(w.wake.as_raw_fd());
        let wait = if w.answered { ANSWER } else { FIRST_ANSWER };
        match rx.recv_timeout(wait) {
            Ok(r) => {
                w.answered = true;
                if let Ok(f) = &r {
                    if w.cache.len() > 256 {
                        w.cache.clear();
                    }
                    // Tagged with the generation from before the question: a change the
                    // answer already includes only costs one more question.
                    w.cache
                        .insert(ifname.to_string(), (gen, Instant::now(), f.clone()));
                }
                Some(r)
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Some(Err(format!(
                "namespace {ino} did not answer within {} ms",
                wait.as_millis()
            ))),
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
        }
    }
}

impl NsWatchers {
    fn query(&mut self, ino: u32, ifname: &str, fresh: bool) -> Result<NsFacts, String> {
        if let Some(r) = self.ask(ino, ifname, fresh) {
            return r;
        }
        // No watcher, or its namespace went away and the inode now names another one.
        self.watches.remove(&ino);
        self.start(ino)?;
        self.ask(ino, ifname, true)
            .unwrap_or_else(|| Err(format!("namespace {ino} went away")))
    }
}

impl FactsSource for NsWatchers {
    fn facts(&mut self, ino: u32, ifname: &str) -> Result<NsFacts, String> {
        self.query(ino, ifname, false)
    }

    fn facts_fresh(&mut self, ino: u32, ifname: &str) -> Result<NsFacts, String> {
        self.query(ino, ifname, true)
    }

    fn changes(&mut self) -> Vec<FactsChange> {
        self.changes_rx.try_iter().collect()
    }
}

fn wake(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a valid u64 to an eventfd.
    unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}

fn last_err(what: &str) -> String {
    format!("{what}: {}", io::Error::last_os_error())
}

fn spawn_watch(ino: u32, changes: mpsc::SyncSender<FactsChange>) -> Result<Watch, String> {
    let gen = Arc::new(AtomicU64::new(0));
    let thread_gen = gen.clone();
    let holder = netns::find_path(ino).ok_or_else(|| {
        format!("namespace {ino} is gone (no /run/netns entry or process holds it any more)")
    })?;
    let file = File::open(&holder).map_err(|e| format!("open {}: {e}", holder.display()))?;
    // SAFETY: eventfd(2) returns a new descriptor or -1.
    let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if efd < 0 {
        return Err(last_err("eventfd"));
    }
    // SAFETY: efd is a fresh descriptor we own.
    let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(efd) });
    let (tx, rx) = mpsc::channel();
    let thread_wake = wake.clone();
    std::thread::Builder::new()
        .name(format!("netns-{ino}"))
        .stack_size(256 * 1024)
        .spawn(move || watch_thread(ino, holder, file, thread_wake, rx, changes, thread_gen))
        .map_err(|e| format!("cannot start a thread for namespace {ino}: {e}"))?;
    Ok(Watch {
        tx,
        wake,
        answered: false,
        last_used: Instant::now(),
        gen,
        cache: HashMap::new(),
    })
}

/// The namespace thread: answers queries until the tracer drops its sender or nothing holds
/// the namespace any more.
fn watch_thread(
    ino: u32,
    mut holder: PathBuf,
    file: File,
    wake: Arc<OwnedFd>,
    rx: mpsc::Receiver<Query>,
    changes: mpsc::SyncSender<FactsChange>,
    gen: Arc<AtomicU64>,
) {
    let mut ns = match NsState::enter(ino, file, changes, gen) {
        Ok(ns) => ns,
        Err(e) => {
            // Answer what is already queued, then leave: the next query restarts us.
            while let Ok(q) = rx.try_recv() {
                let _ = q.reply.send(Err(e.clone()));
            }
            return;
        }
    };
    let mut last_check = Instant::now();
    let mut last_sysctls = Instant::now();
    loop {
        let mut fds = [
            libc::pollfd {
                fd: ns.events.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let wait = LIVENESS.min(SYSCTL_EVERY.saturating_sub(last_sysctls.elapsed()));
        // SAFETY: fds is a valid array of two pollfd.
        unsafe { libc::poll(fds.as_mut_ptr(), 2, wait.as_millis() as i32) };
        if fds[1].revents & libc::POLLIN != 0 {
            let mut v = 0u64;
            // SAFETY: reads 8 bytes into a u64 from a non-blocking eventfd.
            unsafe { libc::read(wake.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
        }
        // Address changes that happened before a query must be in its answer.
        if ns.drain_events() {
            ns.refresh();
        }
        if last_sysctls.elapsed() >= SYSCTL_EVERY {
            last_sysctls = Instant::now();
            ns.check_sysctls(None);
        }
        loop {
            match rx.try_recv() {
                Ok(q) => {
                    let _ = q.reply.send(Ok(ns.facts(&q.ifname)));
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return,
            }
        }
        if last_check.elapsed() >= LIVENESS {
            last_check = Instant::now();
            if netns::inode_of(&holder).ok() != Some(ino) {
                match netns::find_path(ino) {
                    Some(p) => holder = p,
                    // Nothing but us holds it: leave so the kernel can free it.
                    None => return,
                }
            }
        }
    }
}

/// What one namespace thread knows; lives on that thread, inside the namespace.
struct NsState {
    /// Subscribed to RTNLGRP_IPV4_IFADDR and RTNLGRP_LINK.
    events: OwnedFd,
    /// For dumps, so replies and notifications never interleave.
    requests: OwnedFd,
    seq: u32,
    links: HashMap<u32, String>,
    addrs: Vec<IfAddr>,
    error: Option<String>,
    ino: u32,
    /// arp_announce of `all` and every interface as last read, to report changes.
    announce: BTreeMap<String, u8>,
    changes: mpsc::SyncSender<FactsChange>,
    /// Bumped with every change reported, so cached answers are dropped.
    gen: Arc<AtomicU64>,
}

impl NsState {
    fn enter(
        ino: u32,
        file: File,
        changes: mpsc::SyncSender<FactsChange>,
        gen: Arc<AtomicU64>,
    ) -> Result<NsState, String> {
        // SAFETY: setns(2) on a valid namespace descriptor; it moves only this thread.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(last_err(&format!("setns into namespace {ino}")));
        }
        drop(file);
        if netns::inode_of(Path::new("/proc/thread-self/ns/net")).ok() != Some(ino) {
            return Err(format!("setns did not enter namespace {ino}"));
        }
        let groups = (libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_LINK) as u32;
        let events = netlink_socket(groups)?;
        let requests = netlink_socket(0)?;
        let mut ns = NsState {
            events,
            requests,
            seq: 0,
            links: HashMap::new(),
            addrs: Vec::new(),
            error: None,
            ino,
            announce: Default::default(),
            changes,
            gen,
        };
        ns.dump_all()?;
        ns.announce = ns.read_all_announce();
        let mut w = FactsChange::new(ino, ChangeKind::Watched);
        w.arp_announce = Some(ns.announce.clone());
        w.addrs = Some(ns.addrs.clone());
        ns.report(w);
        Ok(ns)
    }

    fn report(&self, c: FactsChange) {
        self.gen.fetch_add(1, Ordering::Release);
        // A full queue means the event loop stalled; the change is lost (and counted), not
        // the thread.
        if self.changes.try_send(c).is_err() {
            CHANGES_DROPPED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// arp_announce of `all` and of every interface that has an IPv4 conf directory.
    fn read_all_announce(&self) -> BTreeMap<String, u8> {
        let mut m = BTreeMap::new();
        let confs = std::iter::once("all").chain(self.links.values().map(String::as_str));
        for c in confs {
            if let Some(v) = read_announce(c) {
                m.insert(c.to_string(), v);
            }
        }
        m
    }

    /// Re-reads arp_announce (of `only` = (`all`, one interface), or of everything) and
    /// reports each value that differs from the last reading.
    fn check_sysctls(&mut self, only: Option<&str>) {
        let now = match only {
            Some(dev) => ["all", dev]
                .into_iter()
                .filter_map(|c| read_announce(c).map(|v| (c.to_string(), v)))
                .collect(),
            None => self.read_all_announce(),
        };
        for (conf, v) in &now {
            let before = self.announce.get(conf).copied();
            if before != Some(*v) {
                self.report(FactsChange {
                    conf: Some(conf.clone()),
                    before,
                    after: Some(*v),
                    ..FactsChange::new(self.ino, ChangeKind::ArpAnnounce)
                });
            }
        }
        if only.is_none() {
            self.announce = now;
        } else {
            self.announce.extend(now);
        }
    }

    /// Reads every pending notification; true if there were any (or some were lost).
    fn drain_events(&mut self) -> bool {
        let mut buf = [0u8; 8192];
        let mut any = false;
        loop {
            // SAFETY: receives into a valid buffer of its length.
            let n = unsafe {
                libc::recv(
                    self.events.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                any = true;
                continue;
            }
            // ENOBUFS: notifications were lost; a full refresh covers them.
            if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOBUFS) {
                any = true;
                continue;
            }
            return any;
        }
    }

    fn refresh(&mut self) {
        let old = std::mem::take(&mut self.addrs);
        match self.dump_all() {
            Ok(()) => {
                self.error = None;
                for c in addr_changes(self.ino, &old, &self.addrs) {
                    self.report(c);
                }
                // Interfaces that went away take their sysctls with them.
                let links: std::collections::HashSet<&String> = self.links.values().collect();
                self.announce.retain(|k, _| k == "all" || links.contains(k));
            }
            Err(e) => {
                self.addrs = old;
                self.error = Some(e);
            }
        }
    }

    fn dump_all(&mut self) -> Result<(), String> {
        let mut links = HashMap::new();
        self.seq += 1;
        for msg in dump(
            &self.requests,
            libc::RTM_GETLINK,
            libc::AF_UNSPEC as u8,
            self.seq,
        )? {
            if let Some((index, name)) = parse_link(&msg) {
                links.insert(index, name);
            }
        }
        self.seq += 1;
        let mut addrs = Vec::new();
        for msg in dump(
            &self.requests,
            libc::RTM_GETADDR,
            libc::AF_INET as u8,
            self.seq,
        )? {
            if addrs.len() >= MAX_ADDRS {
                break;
            }
            if let Some((index, a)) = parse_addr(&msg) {
                let ifname = links
                    .get(&index)
                    .cloned()
                    .unwrap_or_else(|| format!("if{index}"));
                addrs.push(IfAddr { ifname, ..a });
            }
        }
        self.links = links;
        self.addrs = addrs;
        Ok(())
    }

    fn facts(&mut self, ifname: &str) -> NsFacts {
        // Reported before the answer, so the change precedes the request explained with it.
        self.check_sysctls(Some(ifname));
        let mut announce_dev = BTreeMap::new();
        if let Some(v) = self.announce.get(ifname) {
            announce_dev.insert(ifname.to_string(), *v);
        }
        NsFacts {
            announce_all: self.announce.get("all").copied().unwrap_or(0),
            announce_dev,
            addrs: self.addrs.clone(),
        }
    }
}

/// Addresses removed, then added, between two dumps; the order within each follows the dump.
fn addr_changes(ino: u32, old: &[IfAddr], new: &[IfAddr]) -> Vec<FactsChange> {
    let key = |a: &IfAddr| (a.ifname.clone(), a.addr, a.prefix_len);
    let old_keys: std::collections::HashSet<_> = old.iter().map(key).collect();
    let new_keys: std::collections::HashSet<_> = new.iter().map(key).collect();
    let removed = old
        .iter()
        .filter(|a| !new_keys.contains(&key(a)))
        .map(|a| FactsChange::addr(ino, ChangeKind::AddrRemoved, a));
    let added = new
        .iter()
        .filter(|a| !old_keys.contains(&key(a)))
        .map(|a| FactsChange::addr(ino, ChangeKind::AddrAdded, a));
    removed.chain(added).collect()
}

/// net.ipv4.conf.<conf>.arp_announce of the calling thread's namespace.
fn read_announce(conf: &str) -> Option<u8> {
    if conf.is_empty() || conf.contains('/') || conf == "." || conf == ".." {
        return None;
    }
    let p = format!("/proc/sys/net/ipv4/conf/{conf}/arp_announce");
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

fn netlink_socket(groups: u32) -> Result<OwnedFd, String> {
    // SAFETY: socket(2) returns a new descriptor or -1.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(last_err("netlink socket"));
    }
    // SAFETY: fd is fresh and ours.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_nl is plain data; zero is a valid start.
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as u16;
    sa.nl_groups = groups;
    // SAFETY: binds a valid sockaddr_nl of its size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if rc != 0 {
        return Err(last_err("netlink bind"));
    }
    let rcvbuf: libc::c_int = 1 << 20;
    // SAFETY: sets an int option from a valid int.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&rcvbuf as *const libc::c_int).cast(),
            4,
        )
    };
    Ok(fd)
}

const NLMSG_HDR: usize = 16;

/// Sends one dump request and returns each answer message's payload (after the header).
fn dump(fd: &OwnedFd, kind: u16, family: u8, seq: u32) -> Result<Vec<Vec<u8>>, String> {
    // ifinfomsg is 16 bytes and ifaddrmsg 8; both start with the family.
    let body = if kind == libc::RTM_GETLINK { 16 } else { 8 };
    let mut req = vec![0u8; NLMSG_HDR + body];
    req[0..4].copy_from_slice(&((NLMSG_HDR + body) as u32).to_ne_bytes());
    req[4..6].copy_from_slice(&kind.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    req[6..8].copy_from_slice(&flags.to_ne_bytes());
    req[8..12].copy_from_slice(&seq.to_ne_bytes());
    req[NLMSG_HDR] = family;
    // SAFETY: sends a valid buffer of its length to the kernel (default address).
    let n = unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
    if n < 0 {
        return Err(last_err("netlink dump request"));
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: receives into a valid buffer of its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("netlink dump: {e}"));
        }
        let mut data = &buf[..n as usize];
        while data.len() >= NLMSG_HDR {
            let len = u32::from_ne_bytes(data[0..4].try_into().unwrap()) as usize;
            let ty = u16::from_ne_bytes(data[4..6].try_into().unwrap());
            let mseq = u32::from_ne_bytes(data[8..12].try_into().unwrap());
            if len < NLMSG_HDR || len > data.len() {
                return Err("netlink dump: malformed message".to_string());
            }
            if mseq == seq {
                match ty as i32 {
                    libc::NLMSG_DONE => return Ok(out),
                    libc::NLMSG_ERROR => {
                        let code = data
                            .get(16..20)
                            .map(|b| i32::from_ne_bytes(b.try_into().unwrap()))
                            .unwrap_or(0);
                        if code != 0 {
                            return Err(format!(
                                "netlink dump: {}",
                                io::Error::from_raw_os_error(-code)
                            ));
                        }
                        return Ok(out);
                    }
                    _ => out.push(data[NLMSG_HDR..len].to_vec()),
                }
            }
            data = &data[((len + 3) & !3).min(data.len())..];
        }
    }
}

/// (type, payload) of each rtattr in `b`.
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            return None;
        }
        let payload = &b[4..len];
        b = &b[((len + 3) & !3).min(b.len())..];
        Some((ty, payload))
    })
}

/// An RTM_NEWLINK payload: (ifindex, name).
fn parse_link(msg: &[u8]) -> Option<(u32, String)> {
    let index = i32::from_ne_bytes(msg.get(4..8)?.try_into().ok()?) as u32;
    let name = attrs(msg.get(16..)?)
        .find(|(t, _)| *t == libc::IFLA_IFNAME)?
        .1;
    let end = name.iter().position(|&c| c == 0).unwrap_or(name.len());
    Some((index, String::from_utf8_lossy(&name[..end]).into_owned()))
}

const IFA_F_SECONDARY: u32 = 0x01;

/// An RTM_NEWADDR payload for AF_INET: (ifindex, address with an empty ifname).
fn parse_addr(msg: &[u8]) -> Option<(u32, IfAddr)> {
    if msg.len() < 8 || msg[0] != libc::AF_INET as u8 {
        return None;
    }
    let (prefix_len, mut flags, scope) = (msg[1], msg[2] as u32, msg[3]);
    let index = u32::from_ne_bytes(msg[4..8].try_into().ok()?);
    let (mut local, mut address) = (None, None);
    for (ty, p) in attrs(&msg[8..]) {
        let ip = || p.get(..4).map(|b| Ipv4Addr::new(b[0], b[1], b[2], b[3]));
        match ty {
            libc::IFA_LOCAL => local = ip(),
            libc::IFA_ADDRESS => address = ip(),
            libc::IFA_FLAGS if p.len() >= 4 => flags = u32::from_ne_bytes(p[..4].try_into().ok()?),
            _ => {}
        }
    }
    // IFA_LOCAL is the host's own address; IFA_ADDRESS differs only on point-to-point links.
    let addr = local.or(address)?;
    Some((
        index,
        IfAddr {
            ifname: String::new(),
            addr,
            prefix_len,
            scope: Some(scope),
            secondary: Some(flags & IFA_F_SECONDARY != 0),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rta(ty: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(payload);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    #[test]
    fn parses_rtnetlink_address_and_link_messages() {
        let mut m = vec![libc::AF_INET as u8, 24, 0, 0];
        m.extend_from_slice(&7u32.to_ne_bytes());
        m.extend(rta(libc::IFA_ADDRESS, &[198, 51, 100, 99]));
        m.extend(rta(libc::IFA_LOCAL, &[198, 51, 100, 10]));
        m.extend(rta(
            libc::IFA_FLAGS,
            &(0x80u32 | IFA_F_SECONDARY).to_ne_bytes(),
        ));
        let (index, a) = parse_addr(&m).unwrap();
        assert_eq!(index, 7);
        assert_eq!(a.addr, Ipv4Addr::new(198, 51, 100, 10));
        assert_eq!(
            (a.prefix_len, a.scope, a.secondary),
            (24, Some(0), Some(true))
        );
        m[0] = libc::AF_INET6 as u8;
        assert!(parse_addr(&m).is_none());

        let mut l = vec![0u8; 16];
        l[4..8].copy_from_slice(&7i32.to_ne_bytes());
        l.extend(rta(libc::IFLA_MTU, &1500u32.to_ne_bytes()));
        l.extend(rta(libc::IFLA_IFNAME, b"eth3\0"));
        assert_eq!(parse_link(&l), Some((7, "eth3".to_string())));
        // Truncated attributes end the walk instead of reading past the message.
        l.truncate(l.len() - 6);
        assert_eq!(parse_link(&l), None);
    }

    #[test]
    fn address_changes_are_what_differs_between_dumps() {
        use crate::explain::tests::addr;
        let old = vec![
            addr("eth3", "198.51.100.10", 24),
            addr("eth3", "198.51.100.11", 24),
        ];
        let new = vec![
            addr("eth3", "198.51.100.10", 24),
            addr("eth5", "203.0.113.10", 24),
            addr("eth3", "198.51.100.11", 25),
        ];
        let got: Vec<String> = addr_changes(9, &old, &new)
            .iter()
            .map(|c| format!("{} {}", c.subject().unwrap(), c.describe()))
            .collect();
        assert_eq!(
            got,
            [
                "eth3 -198.51.100.11/24",
                "eth5 +203.0.113.10/24",
                "eth3 +198.51.100.11/25"
            ]
        );
        assert!(addr_changes(9, &new, &new).is_empty());
        let mut a = FactsChange::new(9, ChangeKind::ArpAnnounce);
        a.conf = Some("all".into());
        a.after = Some(2);
        assert_eq!(a.describe(), "arp_announce none -> 2");
        let mut w = FactsChange::new(9, ChangeKind::Watched);
        w.arp_announce = Some([("all".to_string(), 1), ("eth3".to_string(), 2)].into());
        w.addrs = Some(old);
        assert_eq!(
            w.describe(),
            "watching: arp_announce all=1 eth3=2; addresses eth3:198.51.100.10/24 \
             eth3:198.51.100.11/24"
        );
    }

    #[test]
    fn sysctl_names_cannot_escape_the_conf_directory() {
        assert_eq!(read_announce("../../../../etc"), None);
        assert_eq!(read_announce(".."), None);
        assert_eq!(read_announce(""), None);
    }

    /// The tracer's own namespace, read through the same thread machinery (needs no root:
    /// entering one's own namespace is permitted only to root, so skip otherwise).
    #[test]
    fn reads_own_namespace_when_root() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let own = netns::inode_of(Path::new("/proc/self/ns/net")).unwrap();
        let mut w = NsWatchers::new();
        let f = w.facts(own, "lo").unwrap();
        assert!(
            f.addrs
                .iter()
                .any(|a| a.ifname == "lo" && a.addr.is_loopback() && a.scope == Some(254)),
            "{f:?}"
        );
        let all: u8 = std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/arp_announce")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(f.announce_all, all);
        assert!(f.announce_dev.contains_key("lo"));
    }
}
