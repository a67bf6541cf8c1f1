//! `--metrics`: a sink that folds every record into Prometheus counters and gauges, and the
//! HTTP server ([`http`]) that exposes them ([`expose`]). The sink and the server share one
//! aggregate behind a mutex; both run on the event loop's thread, so the lock is never
//! contended and a scrape only costs the time to format the text.
//!
//! Cardinality is bounded: each metric keeps at most its cap of label sets; updates for more
//! go to one series whose varying labels read [`OVERFLOW`], and are counted in
//! `arp_trace_metrics_folded_total`. A series not updated for [`IDLE`] is dropped (a deleted
//! pod's namespace stops being exported), which frees its place.

pub mod expose;
pub mod http;

use std::collections::BTreeMap;
use std::hash::Hash;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use arp_trace_model::{
    ArpEvent, ChangeKind, FactsChange, NdiscEvent, NdiscOp, NeighFailed, Reason, Record,
};

use crate::pipeline::{Counters, Sink};

type HashMap<K, V> = foldhash::HashMap<K, V>;

/// The label value of the series that takes updates past a metric's cap.
pub const OVERFLOW: &str = "_overflow";
/// A series (and a namespace's name and sysctls) not updated this long is dropped.
pub const IDLE: Duration = Duration::from_secs(3600);
/// How often idle series are looked for.
const SWEEP: Duration = Duration::from_secs(60);
/// Label sets per metric: requests by (namespace, device, reason, foreign).
pub const MAX_REQUEST_SERIES: usize = 4096;
/// Foreign senders by (namespace, device, sender): only foreign ones are ever labelled.
pub const MAX_SENDER_SERIES: usize = 1024;
/// arp_announce as the gauge shows it. The sysctl is a plain int; arp_solicit() treats any
/// value but 1 and 2 like 0, so a negative one (which the gauge's unsigned store cannot hold)
/// reads 0, the behaviour it selects.
fn gauge_announce(v: i32) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Per (namespace, device): replies, failures, drops, arp_announce.
pub const MAX_DEVICE_SERIES: usize = 4096;
/// Namespaces whose name and arp_announce sysctls are remembered.
const MAX_NAMESPACES: usize = 4096;

/// Counts (or a gauge's value) per label set, capped.
#[derive(Debug)]
pub struct Series<K> {
    map: HashMap<K, Slot>,
    /// Updates past the cap (counters only; a gauge past the cap is not exported).
    overflow: Option<u64>,
    folded: u64,
    cap: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub value: u64,
    touched: Instant,
}

impl<K: Hash + Eq> Series<K> {
    fn new(cap: usize) -> Self {
        Series {
            map: HashMap::default(),
            overflow: None,
            folded: 0,
            cap,
        }
    }

    /// Adds `n` to a counter.
    fn add(&mut self, key: K, n: u64, now: Instant) {
        if let Some(s) = self.map.get_mut(&key) {
            s.value += n;
            s.touched = now;
        } else if self.map.len() < self.cap {
            self.map.insert(
                key,
                Slot {
                    value: n,
                    touched: now,
                },
            );
        } else {
            *self.overflow.get_or_insert(0) += n;
            self.folded += 1;
        }
    }

    /// Sets a gauge.
    fn set(&mut self, key: K, value: u64, now: Instant) {
        if let Some(s) = self.map.get_mut(&key) {
            *s = Slot {
                value,
                touched: now,
            };
        } else if self.map.len() < self.cap {
            self.map.insert(
                key,
                Slot {
                    value,
                    touched: now,
                },
            );
        } else {
            self.folded += 1;
        }
    }

    fn sweep(&mut self, now: Instant) {
        self.map
            .retain(|_, s| now.saturating_duration_since(s.touched) < IDLE);
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, u64)> {
        self.map.iter().map(|(k, s)| (k, s.value))
    }
    pub fn overflow(&self) -> Option<u64> {
        self.overflow
    }
    pub fn folded(&self) -> u64 {
        self.folded
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// A conflict's labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConflictKey {
    pub netns: u32,
    pub device: Box<str>,
    pub kind: arp_trace_model::ConflictKind,
}

/// A neighbour-table change's labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChangeKey {
    pub netns: u32,
    pub device: Box<str>,
    pub cause: arp_trace_model::ChangeCause,
}

/// A received ARP frame's labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReceivedKey {
    pub netns: u32,
    pub device: Box<str>,
    pub op: arp_trace_model::ArpOp,
}

/// An ND frame's labels besides `direction`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NdiscKey {
    pub netns: u32,
    pub device: Box<str>,
    pub op: NdiscOp,
    pub reason: Option<Reason>,
    pub foreign: Option<bool>,
}

/// A request's labels besides `direction`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestKey {
    pub netns: u32,
    pub device: Box<str>,
    /// `None`: the namespace's facts could not be read, so no verdict.
    pub reason: Option<Reason>,
    pub foreign: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceKey {
    pub netns: u32,
    pub device: Box<str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SenderKey {
    pub netns: u32,
    pub device: Box<str>,
    pub sender: Ipv4Addr,
}

/// What is remembered of a namespace: its name, and the arp_announce sysctls the changes
/// report, to work out each interface's effective value when `all` changes.
#[derive(Debug, Default)]
struct Namespace {
    name: Option<String>,
    all: i32,
    devices: BTreeMap<String, i32>,
    touched: Option<Instant>,
}

/// Everything counted so far.
#[derive(Debug)]
pub struct State {
    pub requests: Series<RequestKey>,
    pub ndisc: Series<NdiscKey>,
    pub replies: Series<DeviceKey>,
    /// ARP frames the host's devices received.
    pub received: Series<ReceivedKey>,
    /// Address conflicts reported, where they were seen.
    pub conflicts: Series<ConflictKey>,
    /// Neighbour entries the kernel changed, where and why.
    pub neigh_changes: Series<ChangeKey>,
    pub foreign: Series<SenderKey>,
    pub failures: Series<DeviceKey>,
    pub dropped: Series<DeviceKey>,
    /// Effective arp_announce, max(all, device), per interface.
    pub announce: Series<DeviceKey>,
    pub counters: Counters,
    namespaces: HashMap<u32, Namespace>,
    swept: Instant,
}

impl Default for State {
    fn default() -> Self {
        State {
            requests: Series::new(MAX_REQUEST_SERIES),
            ndisc: Series::new(MAX_REQUEST_SERIES),
            replies: Series::new(MAX_DEVICE_SERIES),
            received: Series::new(MAX_DEVICE_SERIES),
            conflicts: Series::new(MAX_DEVICE_SERIES),
            neigh_changes: Series::new(MAX_DEVICE_SERIES),
            foreign: Series::new(MAX_SENDER_SERIES),
            failures: Series::new(MAX_DEVICE_SERIES),
            dropped: Series::new(MAX_DEVICE_SERIES),
            announce: Series::new(MAX_DEVICE_SERIES),
            counters: Counters::default(),
            namespaces: HashMap::default(),
            swept: Instant::now(),
        }
    }
}

impl State {
    /// The `netns` label: the namespace's name, else its inode.
    pub fn netns_label(&self, ino: u32) -> String {
        match self.namespaces.get(&ino).and_then(|n| n.name.as_deref()) {
            Some(n) => n.to_string(),
            None => ino.to_string(),
        }
    }

    fn namespace(&mut self, ino: u32, name: Option<&str>, now: Instant) -> Option<&mut Namespace> {
        if !self.namespaces.contains_key(&ino) && self.namespaces.len() >= MAX_NAMESPACES {
            return None;
        }
        let ns = self.namespaces.entry(ino).or_default();
        if let Some(n) = name {
            if ns.name.as_deref() != Some(n) {
                ns.name = Some(n.to_string());
            }
        }
        ns.touched = Some(now);
        Some(ns)
    }

    fn arp(&mut self, ev: &ArpEvent<'_>, now: Instant) {
        self.namespace(ev.netns, ev.netns_name.as_deref(), now);
        let dev = || DeviceKey {
            netns: ev.netns,
            device: ev.ifname.as_ref().into(),
        };
        if ev.received() {
            let key = ReceivedKey {
                netns: ev.netns,
                device: ev.ifname.as_ref().into(),
                op: ev.op,
            };
            self.received.add(key, 1, now);
            return;
        }
        if !ev.is_request() {
            self.replies.add(dev(), 1, now);
            return;
        }
        let verdict = ev.verdict.as_ref();
        let key = RequestKey {
            netns: ev.netns,
            device: ev.ifname.as_ref().into(),
            reason: verdict.map(|v| v.reason),
            foreign: verdict.map(|v| v.foreign_sender),
        };
        self.requests.add(key, 1, now);
        if ev.foreign() {
            let key = SenderKey {
                netns: ev.netns,
                device: ev.ifname.as_ref().into(),
                sender: ev.sender_ip,
            };
            self.foreign.add(key, 1, now);
        }
        if let Some(f) = &ev.facts {
            let a = f.arp_announce;
            if let Some(ns) = self.namespace(ev.netns, None, now) {
                ns.all = a.all;
                ns.devices.insert(ev.ifname.to_string(), a.dev.unwrap_or(0));
            }
            self.announce.set(dev(), gauge_announce(a.effective), now);
        }
    }

    fn ndisc(&mut self, ev: &NdiscEvent<'_>, now: Instant) {
        self.namespace(ev.netns, ev.netns_name.as_deref(), now);
        let verdict = ev.verdict.as_ref();
        let key = NdiscKey {
            netns: ev.netns,
            device: ev.ifname.as_ref().into(),
            op: ev.op,
            reason: verdict.map(|v| v.reason),
            foreign: verdict.map(|v| v.foreign_sender),
        };
        self.ndisc.add(key, 1, now);
    }

    fn failed(&mut self, f: &NeighFailed<'_>, now: Instant) {
        self.namespace(f.netns, f.netns_name.as_deref(), now);
        let dev = || DeviceKey {
            netns: f.netns,
            device: f.ifname.as_ref().into(),
        };
        self.failures.add(dev(), 1, now);
        self.dropped
            .add(dev(), f.dropped.len() as u64 + f.dropped_omitted, now);
    }

    /// Follows arp_announce through `watched` and `arp_announce` changes.
    fn change(&mut self, c: &FactsChange<'_>, now: Instant) {
        let Some(ns) = self.namespace(c.netns, c.netns_name.as_deref(), now) else {
            return;
        };
        let changed: Vec<String> = match (c.change, &c.arp_announce, c.conf.as_deref()) {
            (ChangeKind::Watched, Some(map), _) => {
                ns.all = map.get("all").copied().unwrap_or(0);
                ns.devices = map
                    .iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "all" | "default"))
                    .map(|(k, v)| (k.clone(), *v))
                    .collect();
                ns.devices.keys().cloned().collect()
            }
            (ChangeKind::ArpAnnounce, _, Some("all")) => {
                ns.all = c.after.unwrap_or(0);
                ns.devices.keys().cloned().collect()
            }
            (ChangeKind::ArpAnnounce, _, Some("default")) => return,
            (ChangeKind::ArpAnnounce, _, Some(dev)) => {
                match c.after {
                    Some(v) => ns.devices.insert(dev.to_string(), v),
                    None => ns.devices.remove(dev),
                };
                vec![dev.to_string()]
            }
            _ => return,
        };
        let values: Vec<(String, i32)> = changed
            .into_iter()
            .filter_map(|d| ns.devices.get(&d).map(|v| (d, ns.all.max(*v))))
            .collect();
        for (device, v) in values {
            let key = DeviceKey {
                netns: c.netns,
                device: device.into(),
            };
            self.announce.set(key, gauge_announce(v), now);
        }
    }

    fn sweep(&mut self, now: Instant) {
        if now.saturating_duration_since(self.swept) < SWEEP {
            return;
        }
        self.swept = now;
        self.requests.sweep(now);
        self.ndisc.sweep(now);
        self.replies.sweep(now);
        self.received.sweep(now);
        self.conflicts.sweep(now);
        self.neigh_changes.sweep(now);
        self.foreign.sweep(now);
        self.failures.sweep(now);
        self.dropped.sweep(now);
        self.announce.sweep(now);
        self.namespaces.retain(|_, n| {
            n.touched
                .is_some_and(|t| now.saturating_duration_since(t) < IDLE)
        });
    }
}

/// A BPF program of the tracer's, for its run statistics.
#[derive(Debug)]
pub struct Program {
    pub name: String,
    /// Where it is attached (`tp_btf/net_dev_queue`).
    pub hook: String,
    /// A duplicate of the program's descriptor: its fdinfo carries `run_time_ns` and
    /// `run_cnt` while `kernel.bpf_stats_enabled=1`.
    pub fd: OwnedFd,
}

/// When this process started: boot time (`btime` of /proc/stat) plus the process's start in
/// clock ticks after boot (field 22 of /proc/self/stat).
pub fn process_start() -> Option<SystemTime> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let btime: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let own = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &own[own.rfind(')')? + 1..];
    let ticks: u64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    // SAFETY: sysconf has no failure mode for _SC_CLK_TCK.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let since_boot =
        Duration::from_secs(ticks / hz) + Duration::from_millis(ticks % hz * 1000 / hz);
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(btime) + since_boot)
}

/// What does not change during a run.
#[derive(Debug, Default)]
pub struct Fixed {
    pub version: String,
    /// The commit the binary was built from, when the build said (`ARP_TRACE_COMMIT`).
    pub commit: Option<String>,
    /// (role, hook) of every hook in use.
    pub hooks: Vec<(String, String)>,
    pub solicit_path: String,
    pub programs: Vec<Program>,
    pub started: Option<SystemTime>,
    pub listen: Option<SocketAddr>,
}

/// The aggregate, shared by the sink (writing) and the HTTP side (reading).
#[derive(Clone, Debug)]
pub struct Metrics {
    state: Arc<Mutex<State>>,
    fixed: Arc<Fixed>,
}

impl Metrics {
    pub fn new(fixed: Fixed) -> Metrics {
        Metrics {
            state: Arc::default(),
            fixed: Arc::new(fixed),
        }
    }

    /// A poisoned lock still holds whole counts: every update is a few plain assignments.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn fixed(&self) -> &Fixed {
        &self.fixed
    }

    /// The sink that feeds this aggregate.
    pub fn sink(&self) -> MetricsSink {
        MetricsSink {
            metrics: self.clone(),
            output: match self.fixed.listen {
                Some(a) => format!("--metrics {a}"),
                None => "--metrics".into(),
            },
        }
    }
}

pub struct MetricsSink {
    metrics: Metrics,
    output: String,
}

impl Sink for MetricsSink {
    fn output(&self) -> &str {
        &self.output
    }
    fn record(&mut self, rec: &Record<'_>) -> io::Result<()> {
        let now = Instant::now();
        let mut st = self.metrics.lock();
        match rec {
            Record::Arp(ev) => st.arp(ev, now),
            Record::Ndisc(ev) => st.ndisc(ev, now),
            Record::NeighFailed(f) => st.failed(f, now),
            Record::FactsChange(c) => st.change(c, now),
            Record::Conflict(c) => st.conflicts.add(
                ConflictKey {
                    netns: c.netns,
                    device: c.ifname.as_ref().into(),
                    kind: c.kind,
                },
                1,
                now,
            ),
            Record::NeighChange(c) => st.neigh_changes.add(
                ChangeKey {
                    netns: c.netns,
                    device: c.ifname.as_ref().into(),
                    cause: c.cause,
                },
                1,
                now,
            ),
            Record::Header(_) | Record::Summary(_) => {}
        }
        Ok(())
    }
    fn progress(&mut self, counters: &Counters) {
        let mut st = self.metrics.lock();
        st.counters = *counters;
        st.sweep(Instant::now());
    }
    fn finish(&mut self, counters: &Counters) -> io::Result<()> {
        self.metrics.lock().counters = *counters;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
