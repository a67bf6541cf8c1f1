//! Watchers: the facts arp_solicit() consults, per network namespace: every interface's IPv4 addresses
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
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arp_trace_model::{ChangeKind, FactsChange, IfAddr, Link, NsFacts};

use super::coarse::{self, Stamp};
use super::rtnetlink;
use super::sysctl::{read_announce, read_localnet};
use crate::explain::{FactsSource, SharedFacts};

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

/// The namespace threads' end of the queue of changes to the event loop: at most
/// [`MAX_PENDING_CHANGES`] pending, a change past that dropped and counted, never blocking.
///
/// Not a bounded `sync_channel`: that allocates every slot up front, ~12 MB resident for the
/// whole run for a queue that is nearly always empty. An unbounded channel grows (and
/// shrinks) with what is pending, and `pending` enforces the cap instead.
#[derive(Clone)]
struct ChangesTx {
    tx: mpsc::Sender<FactsChange<'static>>,
    /// Changes sent and not yet received: a slot is taken before sending and given back by
    /// the receiver for each change it takes, so there are never more than the cap queued.
    pending: Arc<AtomicUsize>,
    /// Changes lost because the event loop fell behind (the queue was full).
    dropped: Arc<AtomicU64>,
}

impl ChangesTx {
    /// Queues `c`, or drops and counts it when the queue is full (or the loop is gone).
    fn send(&self, c: FactsChange<'static>) {
        let took_slot = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_PENDING_CHANGES).then_some(n + 1)
            })
            .is_ok();
        if !took_slot {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.tx.send(c).is_err() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct Query {
    ifname: String,
    reply: mpsc::SyncSender<Result<NsFacts<'static>, String>>,
}

struct Watch {
    tx: mpsc::Sender<Query>,
    wake: Arc<OwnedFd>,
    answered: bool,
    last_used: Stamp,
    /// Bumped by the thread whenever it reports a change.
    gen: Arc<AtomicU64>,
    /// Answers by egress interface, valid while `gen` has not moved and for `CACHE_FOR`.
    // Looked up for every request (by egress interface, then namespace): a fast hash.
    cache: foldhash::HashMap<String, (u64, Stamp, SharedFacts)>,
}

/// How long a cached answer is used at most (changes invalidate it sooner).
const CACHE_FOR: Duration = Duration::from_secs(1);

/// Facts of every namespace events come from, one watcher thread per namespace.
pub struct Watchers {
    watches: foldhash::HashMap<u32, Watch>,
    failed: foldhash::HashMap<u32, (Instant, String)>,
    changes_tx: ChangesTx,
    changes_rx: mpsc::Receiver<FactsChange<'static>>,
}

impl Default for Watchers {
    fn default() -> Self {
        Self::new()
    }
}

impl Watchers {
    pub fn new() -> Self {
        // Unbounded, so memory follows what is pending; ChangesTx keeps the cap.
        let (tx, changes_rx) = mpsc::channel();
        Watchers {
            watches: Default::default(),
            failed: Default::default(),
            changes_tx: ChangesTx {
                tx,
                pending: Arc::new(AtomicUsize::new(0)),
                dropped: Arc::new(AtomicU64::new(0)),
            },
            changes_rx,
        }
    }

    fn start(&mut self, ino: u32) -> Result<(), String> {
        if let Some((at, why)) = self.failed.get(&ino) {
            if at.elapsed() < RETRY_AFTER {
                return Err(why.clone());
            }
        }
        let reporter = Reporter {
            ino,
            changes: self.changes_tx.clone(),
            gen: Arc::new(AtomicU64::new(0)),
        };
        let res = spawn_watch(reporter);
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

    fn ask(&mut self, ino: u32, ifname: &str, fresh: bool) -> Option<Result<SharedFacts, String>> {
        let w = self.watches.get_mut(&ino)?;
        w.last_used = coarse::now();
        let gen = w.gen.load(Ordering::Acquire);
        if !fresh {
            if let Some((g, at, f)) = w.cache.get(ifname) {
                if *g == gen && coarse::now().saturating_sub(*at) < CACHE_FOR {
                    return Some(Ok(Arc::clone(f)));
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
                let r = r.map(Arc::new);
                if let Ok(f) = &r {
                    if w.cache.len() > 256 {
                        w.cache.clear();
                    }
                    // Tagged with the generation from before the question: a change the
                    // answer already includes only costs one more question.
                    w.cache
                        .insert(ifname.to_string(), (gen, coarse::now(), Arc::clone(f)));
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

impl Watchers {
    fn query(&mut self, ino: u32, ifname: &str, fresh: bool) -> Result<SharedFacts, String> {
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

impl FactsSource for Watchers {
    fn facts(&mut self, ino: u32, ifname: &str) -> Result<SharedFacts, String> {
        self.query(ino, ifname, false)
    }

    fn facts_fresh(&mut self, ino: u32, ifname: &str) -> Result<SharedFacts, String> {
        self.query(ino, ifname, true)
    }

    fn changes(&mut self) -> Vec<FactsChange<'static>> {
        // A watcher whose thread left (its namespace went away) holds only its wake eventfd
        // and cache: let them go now rather than when MAX_WATCHED pushes it out.
        self.watches.retain(|_, w| Arc::strong_count(&w.wake) > 1);
        let pending = &self.changes_tx.pending;
        // Each change taken gives its slot back at once, as a bounded channel would.
        self.changes_rx
            .try_iter()
            .inspect(|_| {
                pending.fetch_sub(1, Ordering::AcqRel);
            })
            .collect()
    }

    fn changes_dropped(&self) -> u64 {
        self.changes_tx.dropped.load(Ordering::Relaxed)
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

/// Reports a namespace's changes to the event loop, and bumps its generation so the loop's
/// cached answers for it are dropped.
struct Reporter {
    ino: u32,
    changes: ChangesTx,
    gen: Arc<AtomicU64>,
}

impl Reporter {
    fn report(&self, c: FactsChange<'static>) {
        self.gen.fetch_add(1, Ordering::Release);
        // A full queue means the event loop stalled; the change is lost (and counted), not
        // the thread.
        self.changes.send(c);
    }
}

fn spawn_watch(reporter: Reporter) -> Result<Watch, String> {
    let ino = reporter.ino;
    let gen = reporter.gen.clone();
    let holder = super::find::find_path(ino).ok_or_else(|| {
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
        .spawn(move || watch_thread(holder, file, thread_wake, rx, reporter))
        .map_err(|e| format!("cannot start a thread for namespace {ino}: {e}"))?;
    Ok(Watch {
        tx,
        wake,
        answered: false,
        last_used: coarse::now(),
        gen,
        cache: Default::default(),
    })
}

/// The namespace thread: answers queries until the tracer drops its sender or nothing holds
/// the namespace any more.
fn watch_thread(
    mut holder: PathBuf,
    file: File,
    wake: Arc<OwnedFd>,
    rx: mpsc::Receiver<Query>,
    reporter: Reporter,
) {
    let ino = reporter.ino;
    let mut ns = match NsState::enter(file, reporter) {
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
            if super::find::inode_of(&holder).ok() != Some(ino) {
                match super::find::find_path(ino) {
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
    l3: HashMap<u32, rtnetlink::L3>,
    addrs: Vec<IfAddr<'static>>,
    error: Option<String>,
    ino: u32,
    /// arp_announce of `all` and every interface as last read, to report changes.
    announce: BTreeMap<String, i32>,
    reporter: Reporter,
}

impl NsState {
    fn enter(file: File, reporter: Reporter) -> Result<NsState, String> {
        let ino = reporter.ino;
        super::enter::enter(&file, ino)?;
        drop(file);
        let groups = (libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_LINK) as u32;
        let events = rtnetlink::socket(groups)?;
        let requests = rtnetlink::socket(0)?;
        let mut ns = NsState {
            events,
            requests,
            seq: 0,
            links: HashMap::new(),
            l3: HashMap::new(),
            addrs: Vec::new(),
            error: None,
            ino,
            announce: Default::default(),
            reporter,
        };
        ns.dump_all()?;
        ns.announce = ns.read_all_announce();
        let mut w = FactsChange::new(ino, ChangeKind::Watched);
        w.arp_announce = Some(ns.announce.clone());
        w.addrs = Some(ns.addrs.clone());
        ns.report(w);
        Ok(ns)
    }

    fn report(&self, c: FactsChange<'static>) {
        self.reporter.report(c);
    }

    /// arp_announce of `all` and of every interface that has an IPv4 conf directory.
    fn read_all_announce(&self) -> BTreeMap<String, i32> {
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
        let d = rtnetlink::dump(&self.requests, &mut self.seq, MAX_ADDRS)?;
        self.links = d.links;
        self.l3 = d.l3;
        self.addrs = d.addrs;
        Ok(())
    }

    fn facts(&mut self, ifname: &str) -> NsFacts<'static> {
        // Reported before the answer, so the change precedes the request explained with it.
        self.check_sysctls(Some(ifname));
        let mut announce_dev = BTreeMap::new();
        if let Some(v) = self.announce.get(ifname) {
            announce_dev.insert(ifname.to_string(), *v);
        }
        // route_localnet is read here, not watched: the BPF program reads it again at
        // transmit, and it is rarely set.
        let localnet_dev = read_localnet(ifname)
            .map(|v| (ifname.to_string(), v))
            .into_iter()
            .collect();
        NsFacts {
            announce_all: self.announce.get("all").copied().unwrap_or(0),
            announce_dev,
            addrs: self.addrs.clone(),
            localnet_all: read_localnet("all").unwrap_or(false),
            localnet_dev,
            links: self.links(),
            ..Default::default()
        }
    }

    /// Every link, with its VRF table or master named: what explanations need to tell L3
    /// domains apart and to name the devices the BPF program lists by index.
    fn links(&self) -> Vec<Link> {
        let mut out: Vec<Link> = self
            .links
            .iter()
            .map(|(&index, name)| {
                let l3 = self.l3.get(&index).copied().unwrap_or_default();
                Link {
                    ifname: name.clone(),
                    ifindex: Some(index),
                    master: l3.master.and_then(|m| self.links.get(&m).cloned()),
                    vrf_table: l3.vrf_table,
                }
            })
            .collect();
        out.sort_by_key(|l| l.ifindex);
        out
    }
}

/// Addresses removed, then added, between two dumps; the order within each follows the dump.
fn addr_changes(ino: u32, old: &[IfAddr], new: &[IfAddr]) -> Vec<FactsChange<'static>> {
    let key = |a: &IfAddr| (a.ifname.to_string(), a.addr, a.prefix_len);
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

#[cfg(test)]
mod tests;
