//! Attribution: joins each ARP request (and IPv6 neighbour solicitation) with the packet the
//! kernel passed to `arp_solicit()` (`ndisc_solicit()`), its trigger, the process or path
//! that sent that packet, and the neighbour's state; and turns neighbour failures into
//! `neigh_failed` events listing the packets the kernel dropped.
//!
//! The kernel side reports three records per solicit, in this order on one CPU: the frame
//! (numbered per CPU), the trigger naming that number, and the neighbour naming it too. Both
//! neighbour tables share the tracepoints, so one joiner serves both families.
//!
//! [`trigger`] decodes a trigger record and decides its sender ([`owners`]); this module joins
//! the records, keeps events in the order the kernel sent them, and lists what a failure
//! dropped.

pub mod owners;
mod recent;
mod table;
pub mod trigger;

use std::borrow::Cow;
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use arp_trace_common::{
    NeighChangeEvent, NeighEvent, TriggerEvent, EVENT_NEIGH_DROP, FAMILY_INET6, HOOK_FENTRY,
    HOOK_KPROBE, LL_UNREAD, NEIGH_FAILED,
};
use arp_trace_model::{
    ArpEvent, ArpOp, ChangeCause, NdiscEvent, NeighChange, NeighFailed, Reason, Time, Trigger,
};

use owners::{current_if_task, resolve_owner, Owner, SocketOwners};
use recent::Recent;
pub use trigger::Ifnames;
use trigger::{make_trigger, solicit_state};

/// What the joiner hands on.
pub enum Joined {
    Arp(Box<ArpEvent<'static>>),
    Ndisc(Box<NdiscEvent<'static>>),
    Failed(Box<NeighFailed<'static>>),
    Change(Box<NeighChange<'static>>),
}

/// A transmitted solicitation waiting for its records: an ARP request or an IPv6 neighbour
/// solicitation. The join is the same; only where the fields live differs. Boxed from the
/// start, as they leave: the pending table moves a pointer, not a whole event, as it grows.
enum Sent {
    Arp(Box<ArpEvent<'static>>),
    Ndisc(Box<NdiscEvent<'static>>),
}

impl Sent {
    fn target(&self) -> IpAddr {
        match self {
            Sent::Arp(e) => e.target_ip.into(),
            Sent::Ndisc(e) => e.target_ip.into(),
        }
    }

    fn time(&self) -> Time {
        match self {
            Sent::Arp(e) => e.time,
            Sent::Ndisc(e) => e.time,
        }
    }

    fn unicast(&self) -> bool {
        match self {
            Sent::Arp(e) => e.unicast,
            Sent::Ndisc(e) => e.unicast,
        }
    }

    fn trigger(&mut self) -> &mut Option<Trigger<'static>> {
        match self {
            Sent::Arp(e) => &mut e.trigger,
            Sent::Ndisc(e) => &mut e.trigger,
        }
    }

    fn set_neigh(&mut self, state: &'static str, attempt: u32, queued: u32) {
        let (s, a, q) = match self {
            Sent::Arp(e) => (&mut e.neigh_state, &mut e.attempt, &mut e.queued),
            Sent::Ndisc(e) => (&mut e.neigh_state, &mut e.attempt, &mut e.queued),
        };
        (*s, *a, *q) = (Some(Cow::Borrowed(state)), Some(attempt), Some(queued));
    }

    fn joined(self) -> Joined {
        match self {
            Sent::Arp(e) => Joined::Arp(e),
            Sent::Ndisc(e) => Joined::Ndisc(e),
        }
    }
}

struct Pending {
    ev: Sent,
    since: Instant,
    /// How long it may wait for its records.
    wait: Duration,
    /// The kernel side will write a neighbour record for it (it came from `arp_solicit()`).
    expected: bool,
    /// Its neighbour record arrived: nothing more will join it.
    done: bool,
}

/// A place in the output order: a request still being joined, or an event ready to go that
/// waits behind one so that events leave in the order the kernel sent them.
enum Queued {
    Request((u32, u64)),
    Ready(Joined),
}

/// The joiner's tables are looked up several times per request with small integer keys: a
/// fast hash, not SipHash (the keys come from the kernel, not from a peer).
type Map<K, V> = foldhash::HashMap<K, V>;

const MAX_DROPS_LISTED: usize = 32;
/// How long a request not known to come from `arp_solicit()` waits for records that may join
/// it (ARP a process wrote through a packet socket, gratuitous ARP, bridged frames get none).
pub const JOIN_WAIT: Duration = Duration::from_millis(50);
/// How long a request from `arp_solicit()` waits for its neighbour record, which the kernel
/// writes once the solicit and the softirqs it raised have run. Microseconds on hardware;
/// under a loaded hypervisor the CPU that solicited can stall for far longer than JOIN_WAIT,
/// and a request handed on before its record arrives loses its state, attempt and owner.
pub const SOLICIT_WAIT: Duration = Duration::from_secs(3);
/// Events the joiner keeps in its output order at most. A request whose neighbour record was
/// lost (the ring buffer full: the tracer fell behind) waits [`SOLICIT_WAIT`], and every event
/// after it waits behind it: 218 MiB peak RSS after a reader stalled in a storm at 40,000
/// solicitations/s (BENCHMARKS.md, fifth step). Past this, the oldest requests go on without
/// their records (counted in `unjoined`), as after the wait.
/// A storm's usual queue is what one read of the ring brings (~600 events at 60,000/s).
pub const MAX_QUEUED: usize = 8192;
/// Neighbours whose last attempt number the joiner is sure to remember: the last this many
/// solicited (at most twice as many are kept, [`Recent`]). An entry is dropped only when its
/// neighbour fails, so a host that resolves ever new addresses (a scan, a /16 of clients)
/// would otherwise grow the map for the tracer's whole life. A failure whose attempt was let
/// go takes it from the entry's probe count instead.
pub const MAX_ATTEMPTS_KEPT: usize = 32_768;
/// Neighbours with queue-overflow drops waiting for a failure (the newest this many, at most
/// twice as many kept). Drops for an entry that then resolved wait for a failure that never
/// comes; the ones let go are counted in `unmatched`.
pub const MAX_QUEUEFULL_KEYS: usize = 4096;

/// Joins the kernel's records into complete events.
pub struct Joiner {
    /// Keyed by (cpu, sequence number): a fast hash, and room for a storm's requests in
    /// flight from the start, since growing moves every waiting event.
    pending: Map<(u32, u64), Pending>,
    order: VecDeque<Queued>,
    /// NEIGH_FAILED drops seen on a CPU, waiting for that CPU's failure record.
    drops_by_cpu: Map<u32, Vec<Trigger<'static>>>,
    /// Queue-overflow drops, by (netns, ifindex, destination).
    queuefull: Recent<(u32, u32, IpAddr), Vec<Trigger<'static>>>,
    omitted: Map<u32, u64>,
    pub owners: SocketOwners,
    /// (netns, ifindex) -> name, learned from transmitted frames and neighbour records.
    pub ifnames: Ifnames,
    clock_offset: i128,
    /// Triggers that named no pending request (counted, never dropped silently).
    pub unmatched: u64,
    /// Requests from `arp_solicit()` handed on without their neighbour record.
    pub unjoined: u64,
    /// How long such a request waits for it ([`SOLICIT_WAIT`]; tests shorten it).
    pub solicit_wait: Duration,
    /// `SKB_DROP_REASON_NEIGH_QUEUEFULL` on this kernel.
    pub queuefull_reason: u32,
    /// Attempt number of the last request per (netns, ifindex, target), for failures.
    last_attempt: Recent<(u32, u32, IpAddr), u32>,
    /// IPv4 entries whose last request was a PROBE state's unicast probe, with the MAC it
    /// went to: the entry was valid, so its failure is a change of the table.
    probing: Recent<(u32, u32, IpAddr), arp_trace_model::Mac>,
    /// Per CPU, a trigger from `arp_solicit()`'s entry (fentry/kprobe) waiting for the
    /// request it announced: (sequence number the request will get, trigger, its target).
    early: Map<u32, (u64, Trigger<'static>, IpAddr)>,
    /// The latest NEIGH_FAILED drops on any CPU, newest last.
    recent_failed: VecDeque<RecentDrop>,
    /// The newest ARP frame each CPU received, for the table changes it causes.
    recent: table::RecentFrames,
    spare: Spare,
}

/// Boxes and drop lists of events the pipeline is done with, reused for the next events: a
/// storm otherwise allocates and frees three of them per request. At most [`SPARE`] of each.
// The boxes themselves are what is kept: `Joined` hands events on boxed.
#[allow(clippy::vec_box)]
#[derive(Default)]
struct Spare {
    arp: Vec<Box<ArpEvent<'static>>>,
    failed: Vec<Box<NeighFailed<'static>>>,
    drops: Vec<Vec<Trigger<'static>>>,
}

const SPARE: usize = 64;

impl Spare {
    fn arp(&mut self, ev: ArpEvent<'static>) -> Box<ArpEvent<'static>> {
        match self.arp.pop() {
            Some(mut b) => {
                *b = ev;
                b
            }
            None => Box::new(ev),
        }
    }

    fn failed(&mut self, f: NeighFailed<'static>) -> Box<NeighFailed<'static>> {
        match self.failed.pop() {
            Some(mut b) => {
                *b = f;
                b
            }
            None => Box::new(f),
        }
    }
}

/// A packet dropped as its neighbour entry failed, kept a moment in case it was the one a
/// request on another CPU had just solicited for.
struct RecentDrop {
    time: i128,
    netns: u32,
    ifindex: u32,
    trigger: Trigger<'static>,
}

const RECENT_FAILED: usize = 64;
/// How long before a request its packet may have been dropped by a racing failure: the
/// purge can run while `arp_solicit()` is still building the request.
const RACE_WINDOW_NS: i128 = 1_000_000;

impl Joiner {
    pub fn new(clock_offset: i128) -> Self {
        Joiner {
            pending: foldhash::HashMap::with_capacity_and_hasher(1024, Default::default()),
            order: VecDeque::new(),
            drops_by_cpu: Map::default(),
            queuefull: Recent::new(MAX_QUEUEFULL_KEYS),
            omitted: Map::default(),
            owners: SocketOwners::new(),
            ifnames: Ifnames::default(),
            clock_offset,
            unmatched: 0,
            unjoined: 0,
            solicit_wait: SOLICIT_WAIT,
            queuefull_reason: 0,
            last_attempt: Recent::new(MAX_ATTEMPTS_KEPT),
            probing: Recent::new(table::MAX_PROBING),
            early: Map::default(),
            recent_failed: VecDeque::new(),
            recent: table::RecentFrames::default(),
            spare: Spare::default(),
        }
    }

    /// A neighbour entry the kernel changed, with what caused it, in its place among the
    /// others.
    pub fn change(&mut self, raw: &NeighChangeEvent, out: &mut Vec<Joined>) {
        let c = self.recent.change(raw, self.clock_offset);
        self.learn_ifname(c.netns, c.ifindex, &c.ifname);
        self.hand_on(Joined::Change(Box::new(c)), out);
    }

    /// Nanoseconds to add to a kernel timestamp (CLOCK_MONOTONIC) for wall-clock time.
    pub fn clock_offset(&self) -> i128 {
        self.clock_offset
    }

    /// A transmitted ARP frame. Requests wait for their trigger; replies pass straight on.
    /// A transmitted ARP frame; `from_solicit` when the kernel built it in `arp_solicit()`,
    /// so its neighbour record will follow.
    pub fn arp(
        &mut self,
        cpu: u32,
        seq: u64,
        ev: ArpEvent<'static>,
        from_solicit: bool,
        out: &mut Vec<Joined>,
    ) {
        self.learn_ifname(ev.netns, ev.ifindex, &ev.ifname);
        if ev.received() {
            self.recent.saw(cpu, &ev);
        }
        // A packet socket's request carries its own trigger (the frame): nothing to join.
        if ev.op != ArpOp::Request || seq == 0 || ev.trigger.is_some() {
            let b = self.spare.arp(ev);
            self.hand_on(Joined::Arp(b), out);
            return;
        }
        let mut ev = ev;
        let mut expected = from_solicit;
        if let Some((want, _, _)) = self.early.get(&cpu) {
            if *want <= seq {
                let (want, trig, target) = self.early.remove(&cpu).expect("just seen");
                // A solicit that transmitted nothing leaves its number to another request;
                // the target check keeps that request from inheriting the wrong packet.
                if want == seq && target == IpAddr::from(ev.target_ip) {
                    ev.trigger = Some(trig);
                    expected = true; // the hook on arp_solicit() saw it
                } else {
                    self.unmatched += 1;
                }
            }
        }
        let b = self.spare.arp(ev);
        self.wait(cpu, seq, Sent::Arp(b), expected);
    }

    /// A transmitted ND frame; `from_solicit` when the kernel built it in `ndisc_solicit()`,
    /// so its trigger and neighbour record will follow (advertisements and DAD pass on).
    pub fn ndisc(
        &mut self,
        cpu: u32,
        seq: u64,
        ev: NdiscEvent<'static>,
        from_solicit: bool,
        out: &mut Vec<Joined>,
    ) {
        self.learn_ifname(ev.netns, ev.ifindex, &ev.ifname);
        if !from_solicit || seq == 0 {
            self.hand_on(Joined::Ndisc(Box::new(ev)), out);
            return;
        }
        self.wait(cpu, seq, Sent::Ndisc(Box::new(ev)), true);
    }

    /// Every frame names its interface, which nearly always is the name already known: no
    /// allocation then.
    fn learn_ifname(&mut self, netns: u32, ifindex: u32, name: &str) {
        match self.ifnames.get_mut(&(netns, ifindex)) {
            Some(known) if known == name => {}
            Some(known) => *known = arp_trace_model::intern::name(name),
            None => {
                self.ifnames
                    .insert((netns, ifindex), arp_trace_model::intern::name(name));
            }
        }
    }

    fn wait(&mut self, cpu: u32, seq: u64, ev: Sent, expected: bool) {
        self.pending.insert(
            (cpu, seq),
            Pending {
                ev,
                since: Instant::now(),
                wait: if expected {
                    self.solicit_wait
                } else {
                    JOIN_WAIT
                },
                expected,
                done: false,
            },
        );
        self.order.push_back(Queued::Request((cpu, seq)));
    }

    /// Passes an event on now, or queues it behind requests still being joined.
    fn hand_on(&mut self, j: Joined, out: &mut Vec<Joined>) {
        if self.order.is_empty() {
            out.push(j);
        } else {
            self.order.push_back(Queued::Ready(j));
        }
    }

    pub fn trigger(&mut self, t: &TriggerEvent) {
        let Some(mut trig) = make_trigger(t, &mut self.owners, &self.ifnames) else {
            return;
        };
        if t.kind == EVENT_NEIGH_DROP {
            let reason = if t.drop_reason != 0 && self.is_queuefull(t.drop_reason) {
                "neigh_queuefull"
            } else {
                "neigh_failed"
            };
            trig.drop_reason = Some(reason.into());
            if reason == "neigh_failed" {
                if self.recent_failed.len() == RECENT_FAILED {
                    self.recent_failed.pop_front();
                }
                self.recent_failed.push_back(RecentDrop {
                    time: t.ts_ns as i128 + self.clock_offset,
                    netns: t.netns,
                    ifindex: t.ifindex,
                    trigger: trig.clone(),
                });
            }
            let list = if reason == "neigh_queuefull" {
                let (list, gone) = self
                    .queuefull
                    .get_or_default((t.netns, t.ifindex, trig.dst));
                if let Some(gone) = gone {
                    self.unmatched += gone.values().map(|v| v.len() as u64).sum::<u64>();
                }
                list
            } else {
                self.drops_by_cpu
                    .entry(t.cpu)
                    .or_insert_with(|| self.spare.drops.pop().unwrap_or_default())
            };
            if list.len() < MAX_DROPS_LISTED {
                list.push(trig);
            } else {
                *self.omitted.entry(t.cpu).or_default() += 1;
            }
            return;
        }
        if t.hook == HOOK_FENTRY || t.hook == HOOK_KPROBE {
            let target = neigh_target(t.family, t.target);
            if self
                .early
                .insert(t.cpu, (t.req_seq, trig, target))
                .is_some()
            {
                self.unmatched += 1;
            }
            return;
        }
        match self.pending.get_mut(&(t.cpu, t.req_seq)) {
            Some(p) if t.req_seq != 0 => *p.ev.trigger() = Some(trig),
            _ => self.unmatched += 1,
        }
    }

    fn is_queuefull(&self, reason: u32) -> bool {
        reason == self.queuefull_reason
    }

    /// The neighbour after a solicit: completes the pending request; a failure also yields a
    /// `neigh_failed` event with the packets dropped.
    pub fn neigh(&mut self, n: &NeighEvent, out: &mut Vec<Joined>) {
        let target = neigh_target(n.family, n.target);
        // Borrowed: most neighbour records only confirm a name already learnt.
        let ifname = arp_trace_model::kernel_name_ref(&n.ifname);
        if !ifname.is_empty() {
            self.learn_ifname(n.netns, n.ifindex, &ifname);
        }
        if n.req_seq != 0 {
            if let Some(p) = self.pending.get_mut(&(n.cpu, n.req_seq)) {
                p.done = true;
                let owner = Owner {
                    flags: n.owner_flags,
                    sk_ino: n.sk_ino,
                    pid_tgid: n.pid_tgid,
                    comm: &n.comm,
                    context: n.context,
                    may_be_current: true,
                };
                if let Some(t) = p.ev.trigger().as_mut() {
                    let resolved =
                        resolve_owner(&owner, &mut self.owners).or_else(|| current_if_task(&owner));
                    if let Some((o, pid, comm)) = resolved {
                        (t.origin, t.pid, t.comm) = (o, pid, comm);
                        t.in_ifindex = None;
                        t.in_ifname = None;
                    }
                }
                if p.ev.trigger().is_none() && n.qlen == 0 {
                    // The queue was empty by the time this record was written: the entry
                    // failed on another CPU around the solicit (its timer raced the send, and
                    // neigh_invalidate() purged the packet this CPU had just queued, before
                    // or after the request left). The newest such drop names it.
                    let now = n.ts_ns as i128 + self.clock_offset;
                    let since = p.ev.time().0 - RACE_WINDOW_NS;
                    *p.ev.trigger() = self
                        .recent_failed
                        .iter()
                        .rev()
                        .find(|d| {
                            (d.netns, d.ifindex) == (n.netns, n.ifindex)
                                && d.trigger.dst == target
                                && (since..=now).contains(&d.time)
                        })
                        .map(|d| d.trigger.clone());
                }
                let (state, attempt) = solicit_state(n, p.ev.unicast());
                p.ev.set_neigh(state, attempt, n.qlen);
                debug_assert_eq!(p.ev.target(), target);
                let key = (n.netns, n.ifindex, target);
                self.last_attempt.insert(key, attempt);
                match &p.ev {
                    Sent::Arp(e) if state == "probe" => {
                        // arp_solicit() sends a probe to neigh->ha with a zero target MAC.
                        self.probing.insert(key, e.eth_dst.unwrap_or(e.target_mac));
                    }
                    _ => {
                        self.probing.remove(&key);
                    }
                }
            }
        }
        if n.flags & NEIGH_FAILED != 0 {
            let mut dropped = self.drops_by_cpu.remove(&n.cpu).unwrap_or_default();
            dropped.extend(
                self.queuefull
                    .remove(&(n.netns, n.ifindex, target))
                    .unwrap_or_default(),
            );
            let dropped_omitted = self.omitted.remove(&n.cpu).unwrap_or(0);
            let attempt = self.last_attempt.remove(&(n.netns, n.ifindex, target));
            // ndisc_send_ns() sends nothing when neither the packet's source nor a
            // link-local address of the device is usable: no solicitation left for this
            // entry, and the device had no usable link-local address as it failed.
            let silent = n.family == FAMILY_INET6
                && attempt.is_none()
                && n.ll_usable == 0
                && n.ll_total != LL_UNREAD;
            let (cause, nlmsg_pid, task) = table::failure_cause(n);
            let failed = Joined::Failed(self.spare.failed(NeighFailed {
                time: Time(n.ts_ns as i128 + self.clock_offset),
                netns: n.netns,
                netns_name: None,
                ifindex: n.ifindex,
                ifname: arp_trace_model::intern::name(&ifname),
                target_ip: target,
                attempts: attempt.unwrap_or_else(|| n.probes.saturating_sub(n.ucast_probes).max(1)),
                dropped,
                dropped_omitted,
                cause: Some(cause),
                nlmsg_pid,
                task,
                reason: silent.then_some(Reason::NdiscNoLinkLocal),
                explanation: None,
                remedy: None,
                link_locals: silent.then_some(n.ll_total as u32),
            }));
            self.order.push_back(Queued::Ready(failed));
            // An update that failed a PROBE entry is a change neigh_update_done records.
            let probed = self.probing.remove(&(n.netns, n.ifindex, target));
            if let Some(mac) = probed.filter(|_| cause == ChangeCause::Timer) {
                let c = table::probe_failed(n, mac, &ifname, self.clock_offset);
                self.order
                    .push_back(Queued::Ready(Joined::Change(Box::new(c))));
            }
        }
        self.drain(false, out);
    }

    /// Hands on requests whose records did not all arrive in time (no trigger: a probe of a
    /// stale entry, or ARP not sent by the neighbour code). `all` flushes everything (exit).
    pub fn expire(&mut self, all: bool, out: &mut Vec<Joined>) {
        self.drain(all, out);
    }

    /// Hands on events from the front of the order: ready ones, completed requests, and
    /// requests that waited long enough (`all`: everything, at exit).
    fn drain(&mut self, all: bool, out: &mut Vec<Joined>) {
        while let Some(front) = self.order.front() {
            match front {
                Queued::Ready(_) => {
                    if let Some(Queued::Ready(j)) = self.order.pop_front() {
                        out.push(j);
                    }
                }
                Queued::Request(key) => {
                    let key = *key;
                    let full = self.order.len() > MAX_QUEUED;
                    match self.pending.get(&key) {
                        Some(p) if !(all || full || p.done || p.since.elapsed() >= p.wait) => break,
                        _ => {}
                    }
                    self.order.pop_front();
                    if let Some(p) = self.pending.remove(&key) {
                        self.unjoined += (p.expected && !p.done) as u64;
                        out.push(p.ev.joined());
                    }
                }
            }
        }
    }

    /// Takes back an event the pipeline is done with, for its box and lists to be reused.
    pub fn recycle(&mut self, j: Joined) {
        let s = &mut self.spare;
        match j {
            Joined::Arp(b) if s.arp.len() < SPARE => s.arp.push(b),
            Joined::Failed(mut f) if s.failed.len() < SPARE => {
                let mut d = std::mem::take(&mut f.dropped);
                if d.capacity() > 0 && s.drops.len() < SPARE {
                    d.clear();
                    s.drops.push(d);
                }
                s.failed.push(f);
            }
            _ => {}
        }
    }

    pub fn has_pending(&self) -> bool {
        !self.order.is_empty()
    }
}

/// A neighbour key as the kernel side copied it: IPv4 in the first 4 bytes, or IPv6.
pub fn neigh_target(family: u32, key: [u8; 16]) -> IpAddr {
    if family == FAMILY_INET6 {
        Ipv6Addr::from(key).into()
    } else {
        Ipv4Addr::new(key[0], key[1], key[2], key[3]).into()
    }
}

#[cfg(test)]
mod tests;
