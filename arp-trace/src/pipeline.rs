//! The one pipeline live and offline work share: a source (the kernel, or a trace file) pushes
//! records; the pipeline filters them, names their namespaces, explains requests that carry no
//! verdict, counts everything, and hands each record to every sink.

use std::borrow::Cow;
use std::io;

use arp_trace_model::{
    ArpEvent, Direction, FactsChange, Family, Header, Held, NdiscEvent, NeighChange, NeighFailed,
    Record, Remedy, RequestFacts, Time, Trigger, Verdict,
};

use crate::explain::{self, egress, FactsSource};

mod filter;
mod table;
use crate::netns::NetnsNames;
pub use filter::{Filter, HashSet, Processes, COMM_LEN};

/// Counts reported on exit; nothing the pipeline drops goes uncounted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// ARP requests and replies this host sent.
    pub requests: u64,
    pub replies: u64,
    /// ARP frames the host's devices received (requests and replies).
    pub received: u64,
    /// IPv6 neighbour solicitations and advertisements.
    pub solicits: u64,
    pub adverts: u64,
    /// Events the filters excluded.
    pub filtered: u64,
    /// ARP frames that were not Ethernet/IPv4 request/reply.
    pub undecodable: u64,
    /// Records the kernel could not deliver (ring buffer full).
    pub lost: u64,
    /// Neighbour entries that failed to resolve.
    pub failures: u64,
    /// Requests whose sender IP is in none of the egress interface's subnets.
    pub foreign: u64,
    /// Address conflicts reported.
    pub conflicts: u64,
    /// Sightings and conflicts the conflict tables had no room for.
    pub conflicts_dropped: u64,
    /// Neighbour entries whose address or validity changed.
    pub neigh_changes: u64,
    /// Address or sysctl changes lost because the event loop fell behind.
    pub changes_dropped: u64,
    /// Program runs the kernel skipped because the program was already running on that CPU
    /// (`recursion_misses`): events that may be missing.
    pub missed: u64,
    /// Records a BPF program reserved and discarded because a kernel read failed.
    pub discarded: u64,
    /// Requests from `arp_solicit()` handed on without their neighbour record (state,
    /// attempt and owner unknown).
    pub unjoined: u64,
    /// Trigger records that named no request.
    pub unmatched: u64,
}

/// What an admitted frame is counted as.
#[derive(Clone, Copy)]
enum Seen {
    Received,
    Request,
    Reply,
    Solicit,
    Advert,
}

/// Whether an I/O error means "the reader went away" (`arp-trace | head`): that output is
/// dropped, quietly like tcpdump does, rather than failing the run.
pub fn is_closed_pipe(e: &io::Error) -> bool {
    // serde_json wraps the writer's error when a full buffer is written mid-object.
    e.kind() == io::ErrorKind::BrokenPipe
        || e.get_ref()
            .and_then(|i| i.downcast_ref::<serde_json::Error>())
            .and_then(serde_json::Error::io_error_kind)
            == Some(io::ErrorKind::BrokenPipe)
}

/// A consumer of records: the terminal, JSON Lines, the summary, pcapng, trace files.
pub trait Sink {
    /// Where the sink writes, as messages name it: sinks on one output go when it closes.
    fn output(&self) -> &str {
        "stdout"
    }
    /// Where and how the records were taken, once before any record: for outputs that begin
    /// with a header line (`--json`). Trace files write their own.
    fn header(&mut self, _header: &Header) -> io::Result<()> {
        Ok(())
    }
    /// One record: an ARP event, a neighbour failure or a change of facts.
    fn record(&mut self, rec: &Record<'_>) -> io::Result<()>;
    /// The run's counts so far, before each flush (live, the kernel's loss counters are as of
    /// the last second): for sinks that report them while the run goes on.
    fn progress(&mut self, _counters: &Counters) {}
    /// Called after each batch so output reaches pipes promptly, and at least every second
    /// while tracing.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Called every `--summary-interval` seconds.
    fn tick(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Called once at the end with the final counts.
    fn finish(&mut self, _counters: &Counters) -> io::Result<()> {
        Ok(())
    }
}

/// Whether the source should keep going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// `-c` reached, an output failed, or every output went away (closed pipes).
    Stop,
}

/// An output that failed: the run ends, the other outputs are still finished, and the exit
/// status says so.
#[derive(Debug)]
pub struct Failure {
    pub output: String,
    pub error: io::Error,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = self.error.to_string();
        // File sinks name their file in their errors already.
        if !e.starts_with(&self.output) {
            write!(f, "{}: ", self.output)?;
        }
        write!(f, "{e}")?;
        // By kind: sinks wrap the OS error to name their file, which loses its number.
        let hint = match self.error.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
                "; it holds what was written before: free space there or write elsewhere"
            }
            io::ErrorKind::FileTooLarge => {
                "; it holds what was written before: it reached the largest file allowed \
                 (ulimit -f, or the filesystem's); write elsewhere or stop sooner (-c)"
            }
            _ => "",
        };
        write!(f, "{hint}")
    }
}

/// An event the live source built and lends for the pipeline to complete in place.
pub enum Owned<'r> {
    Arp(&'r mut ArpEvent<'static>),
    Ndisc(&'r mut NdiscEvent<'static>),
    Failed(&'r mut NeighFailed<'static>),
    Change(&'r mut NeighChange<'static>),
}

/// Where an event sits while the pipeline completes it: held from a trace (cloned the first
/// time it must change, which replay mostly avoids) or lent by the live source (changed in
/// place).
trait Slot<T>: std::ops::Deref<Target = T> {
    fn to_mut(&mut self) -> &mut T;
}

impl<T: Clone> Slot<T> for Held<'_, T> {
    fn to_mut(&mut self) -> &mut T {
        Held::to_mut(self)
    }
}

impl<T> Slot<T> for &mut T {
    fn to_mut(&mut self) -> &mut T {
        self
    }
}

pub struct Pipeline {
    pub filter: Filter,
    /// Stop after this many requests (`-c`).
    pub count: Option<u64>,
    pub names: NetnsNames,
    pub sinks: Vec<Box<dyn Sink>>,
    pub counters: Counters,
    /// Where requests' namespace facts come from; without it, only events that carry their
    /// facts (read back from a trace) get a verdict.
    pub facts: Option<Box<dyn FactsSource>>,
    /// The last request's facts with the kernel's view laid over them, for the next request
    /// from the same device.
    applied: egress::Applied,
    /// `--foreign-only`: pass on only requests with a foreign sender.
    pub foreign_only: bool,
    /// Time of the last record handed to the sinks, to keep change records in time order.
    last_time: Time,
    /// Outputs that failed (not the ones that closed): their sinks are gone.
    pub failures: Vec<Failure>,
    /// Live runs find address conflicts in received frames; a trace carries those it found.
    pub conflicts: Option<crate::conflicts::Detector>,
}

impl Pipeline {
    pub fn new(filter: Filter, count: Option<u64>, names: NetnsNames) -> Self {
        Pipeline {
            filter,
            count,
            names,
            sinks: Vec::new(),
            counters: Counters::default(),
            facts: None,
            applied: egress::Applied::default(),
            foreign_only: false,
            last_time: Time(i128::MIN),
            failures: Vec::new(),
            conflicts: None,
        }
    }

    /// Hands something to every sink. A sink that fails is dropped: on a closed pipe with
    /// every other sink on that output (the run goes on while others remain), otherwise
    /// alone, as a failure that ends the run. Either way the other sinks get it all.
    fn each(&mut self, mut f: impl FnMut(&mut dyn Sink) -> io::Result<()>) {
        let mut failed = Vec::new();
        for (i, sink) in self.sinks.iter_mut().enumerate() {
            if let Err(e) = f(sink.as_mut()) {
                failed.push((i, e));
            }
        }
        if failed.is_empty() {
            return;
        }
        let mut gone = vec![false; self.sinks.len()];
        let mut closed = Vec::new();
        for (i, error) in failed {
            gone[i] = true;
            let output = self.sinks[i].output().to_string();
            if is_closed_pipe(&error) {
                closed.push(output);
            } else {
                self.failures.push(Failure { output, error });
            }
        }
        for (g, s) in gone.iter_mut().zip(&self.sinks) {
            *g |= closed.iter().any(|c| c == s.output());
        }
        let mut gone = gone.into_iter();
        self.sinks.retain(|_| !gone.next().unwrap_or(false));
        closed.sort();
        closed.dedup();
        if !self.sinks.is_empty() {
            let mut rest: Vec<&str> = self.sinks.iter().map(|s| s.output()).collect();
            rest.dedup();
            for c in closed {
                eprintln!("arp-trace: {c} closed; still writing {}", rest.join(", "));
            }
        }
    }

    /// Whether the source should go on: not once `-c` is reached, an output failed, or no
    /// output is left.
    pub fn flow(&self) -> Flow {
        if self.at_limit() || !self.failures.is_empty() || self.sinks.is_empty() {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }

    /// A frame the kernel side saw that is not an Ethernet/IPv4 ARP request or reply.
    pub fn skipped(&mut self) {
        self.counters.undecodable += 1;
    }

    /// The source's header, handed to every sink before the first record.
    pub fn header(&mut self, h: &Header) -> Flow {
        self.each(|s| s.header(h));
        self.flow()
    }

    /// An event the live source owns, changed in place: an `arp` event is some 800 bytes,
    /// and moving each in and out of a `Record` was a visible share of a storm's CPU.
    pub fn push_owned(&mut self, ev: Owned<'_>) -> Flow {
        match ev {
            Owned::Arp(e) => self.push_arp(e),
            Owned::Ndisc(e) => self.push_ndisc(e),
            Owned::Failed(f) => self.push_failed(f),
            Owned::Change(c) => self.push_neigh_change(Held::Borrowed(c)),
        }
        self.flow()
    }

    /// One record from the source. Headers and summaries are the source's business.
    pub fn push(&mut self, rec: Record<'_>) -> Flow {
        match rec {
            Record::Arp(ev) => self.push_arp(ev),
            Record::Ndisc(ev) => self.push_ndisc(ev),
            Record::NeighFailed(f) => self.push_failed(f),
            Record::FactsChange(c) => self.push_change(c),
            Record::Conflict(c) => self.push_conflict(c),
            Record::NeighChange(c) => self.push_neigh_change(c),
            Record::Header(_) | Record::Summary(_) => {}
        }
        self.flow()
    }

    fn push_arp<'e>(&mut self, ev: impl Slot<ArpEvent<'e>>) {
        if self.at_limit() {
            return;
        }
        // Conflicts see every frame of the namespaces asked for, whatever -i selects: one
        // address on two links needs both links.
        let conflicts = self.conflicts_in(&ev);
        self.push_frame(ev);
        self.found(conflicts);
    }

    /// An ARP frame through the filters, explained when it is a request this host sent.
    fn push_frame<'e>(&mut self, mut ev: impl Slot<ArpEvent<'e>>) {
        if !self.selects(
            Family::Ipv4,
            ev.direction,
            &ev.ifname,
            ev.netns,
            ev.netns_name.as_deref(),
            ev.trigger.as_ref(),
        ) {
            return;
        }
        if let Some(n) = self.missing_name(ev.netns, ev.netns_name.as_deref()) {
            ev.to_mut().netns_name = Some(n);
        }
        if ev.is_sent_request() && ev.verdict.is_none() {
            self.explain(ev.to_mut());
            // What the facts query noticed comes out before the request it explains.
            self.drain_changes_before(Some(ev.time));
            if Some(ev.netns) != self.names.own() {
                let e = ev.to_mut();
                if let Some(r) = e.verdict.as_mut().and_then(|v| v.remedy.as_mut()) {
                    explain::run_in_namespace(r, e.netns, e.netns_name.as_deref());
                }
            }
        } else if let Some(vetted) = vetted(ev.verdict.as_ref(), ev.netns) {
            if let Some(v) = ev.to_mut().verdict.as_mut() {
                v.remedy = Some(vetted);
            }
        }
        let kind = if ev.received() {
            Seen::Received
        } else if ev.is_request() {
            Seen::Request
        } else {
            Seen::Reply
        };
        if self.admit(ev.foreign(), ev.time, kind) {
            if let Some(d) = self.conflicts.as_mut() {
                d.cause(&ev);
            }
            let rec = Record::Arp(Held::Borrowed(&*ev));
            self.each(|s| s.record(&rec));
        }
    }

    /// A neighbour solicitation or advertisement: the same filters and steps as ARP, with
    /// IPv6's rule table and no namespace facts (the program read what the rules need).
    fn push_ndisc<'e>(&mut self, mut ev: impl Slot<NdiscEvent<'e>>) {
        if self.at_limit() {
            return;
        }
        if !self.selects(
            Family::Ipv6,
            ev.direction,
            &ev.ifname,
            ev.netns,
            ev.netns_name.as_deref(),
            ev.trigger.as_ref(),
        ) {
            return;
        }
        if let Some(n) = self.missing_name(ev.netns, ev.netns_name.as_deref()) {
            ev.to_mut().netns_name = Some(n);
        }
        if ev.verdict.is_none() {
            let e = ev.to_mut();
            let mut v = explain::explain_ndisc(e);
            if Some(e.netns) != self.names.own() {
                if let Some(r) = v.remedy.as_mut() {
                    explain::run_in_namespace(r, e.netns, e.netns_name.as_deref());
                }
            }
            e.verdict = Some(v);
        } else if let Some(vetted) = vetted(ev.verdict.as_ref(), ev.netns) {
            if let Some(v) = ev.to_mut().verdict.as_mut() {
                v.remedy = Some(vetted);
            }
        }
        let kind = if ev.is_solicit() {
            Seen::Solicit
        } else {
            Seen::Advert
        };
        if !self.admit(ev.foreign(), ev.time, kind) {
            return;
        }
        let rec = Record::Ndisc(Held::Borrowed(&*ev));
        self.each(|s| s.record(&rec));
    }

    /// The filters a frame's record passes through (`-4`/`-6`, `--direction`, `-i`,
    /// `--netns`, `--pid`/`--comm`); what they drop is counted.
    fn selects(
        &mut self,
        family: Family,
        direction: Direction,
        ifname: &str,
        netns: u32,
        name: Option<&str>,
        trigger: Option<&Trigger<'_>>,
    ) -> bool {
        let f = &self.filter;
        let ok = f.family_matches(family)
            && f.direction_matches(direction)
            && f.matches(Some(ifname), netns, name)
            && (f.processes.is_empty() || f.processes.caused(trigger));
        self.counters.filtered += (!ok) as u64;
        ok
    }

    /// The namespace's name, when the record does not carry one and it has one; from the
    /// run's name table, as every record of a namespace names it.
    fn missing_name(&mut self, netns: u32, name: Option<&str>) -> Option<Cow<'static, str>> {
        match name {
            Some(_) => None,
            None => self.names.name(netns),
        }
    }

    fn at_limit(&self) -> bool {
        self.count
            .is_some_and(|limit| self.counters.requests + self.counters.solicits >= limit)
    }

    /// Applies `--foreign-only` and counts what passes; false when the event is filtered.
    fn admit(&mut self, foreign: bool, time: Time, kind: Seen) -> bool {
        if self.foreign_only && !foreign {
            self.counters.filtered += 1;
            return false;
        }
        self.counters.foreign += foreign as u64;
        self.last_time = self.last_time.max(time);
        let c = &mut self.counters;
        *match kind {
            Seen::Received => &mut c.received,
            Seen::Request => &mut c.requests,
            Seen::Reply => &mut c.replies,
            Seen::Solicit => &mut c.solicits,
            Seen::Advert => &mut c.adverts,
        } += 1;
        true
    }

    /// Attaches the verdict, and the facts it rests on, to a request. Facts the event already
    /// carries (a trace read back) win over the namespace's current ones.
    fn explain(&mut self, ev: &mut ArpEvent<'_>) {
        let facts = match (&ev.facts, &mut self.facts) {
            (Some(f), _) => Ok(std::sync::Arc::new(f.to_ns(&ev.ifname).into_owned())),
            (None, Some(src)) => {
                let mut r = src.facts(ev.netns, &ev.ifname);
                // A cached answer the kernel's own view contradicts is stale: ask again, which
                // also reports the change before this request.
                if let (Ok(f), Some(k)) = (&r, &ev.egress) {
                    if egress::contradicts(k, f, &ev.ifname) {
                        r = src.facts_fresh(ev.netns, &ev.ifname);
                    }
                }
                r.map(|f| match &ev.egress {
                    Some(k) => self.applied.apply(k, f, &ev.ifname),
                    None => f,
                })
            }
            (None, None) => return,
        };
        match facts {
            Ok(f) => {
                ev.verdict = Some(explain::explain(ev, &f));
                if ev.facts.is_none() {
                    ev.facts = Some(RequestFacts::from_ns(&f, &ev.ifname, ev.is_gratuitous()));
                }
            }
            Err(e) => ev.facts_error = Some(e.into()),
        }
    }

    /// Lets sinks that report periodically (the summary) do so.
    pub fn tick(&mut self) -> Flow {
        self.each(|s| s.tick());
        self.flow()
    }

    /// Passes on the changes the facts source noticed (live); called per request and on the
    /// event loop's one-second tick.
    pub fn drain_changes(&mut self) -> Flow {
        self.drain_changes_before(None);
        self.flow()
    }

    /// A change's time is when a thread noticed it, which can be a little after the request
    /// it was read for, or before records already shown: it is moved into
    /// [last record, `before`] so the stream stays in time order.
    fn drain_changes_before(&mut self, before: Option<Time>) {
        let changes = match self.facts.as_mut() {
            Some(f) => f.changes(),
            None => return,
        };
        if let Some(f) = &self.facts {
            self.counters.changes_dropped = f.changes_dropped();
        }
        for mut c in changes {
            let mut t = c.time.max(self.last_time);
            if let Some(b) = before {
                t = t.min(b).max(self.last_time);
            }
            c.time = t;
            self.push_change(Held::Owned(c));
        }
    }

    /// A change record, live or read back. Only `--netns` applies: `-i` and `--foreign-only`
    /// select requests, while a request's explanation can rest on any interface's addresses.
    fn push_change(&mut self, mut ch: Held<'_, FactsChange<'_>>) {
        if !self
            .filter
            .matches(None, ch.netns, ch.netns_name.as_deref())
        {
            return;
        }
        if ch.netns_name.is_none() {
            if let Some(n) = self.names.name(ch.netns) {
                ch.to_mut().netns_name = Some(n.into_owned());
            }
        }
        self.last_time = self.last_time.max(ch.time);
        let rec = Record::FactsChange(Held::Borrowed(&ch));
        self.each(|s| s.record(&rec));
    }

    fn push_failed<'e>(&mut self, mut f: impl Slot<NeighFailed<'e>>) {
        let processes = &self.filter.processes;
        // A failed resolution is about the requests this host sent.
        if !self.filter.family_matches(Family::of(f.target_ip))
            || !self.filter.direction_matches(Direction::Out)
            || !self
                .filter
                .matches(Some(&f.ifname), f.netns, f.netns_name.as_deref())
            || !(processes.is_empty() || f.dropped.iter().any(|t| processes.caused(Some(t))))
        {
            self.counters.filtered += 1;
            return;
        }
        self.counters.failures += 1;
        self.last_time = self.last_time.max(f.time);
        if let Some(n) = self.missing_name(f.netns, f.netns_name.as_deref()) {
            f.to_mut().netns_name = Some(n);
        }
        if f.reason.is_some() && f.explanation.is_none() {
            let own = self.names.own();
            let f = f.to_mut();
            explain::explain_silent_failure(f);
            if Some(f.netns) != own {
                if let Some(r) = f.remedy.as_mut() {
                    explain::run_in_namespace(r, f.netns, f.netns_name.as_deref());
                }
            }
        } else if let Some(r) = f.remedy.as_ref() {
            if let Some(vetted) = explain::shell::vet(r, f.netns) {
                f.to_mut().remedy = Some(vetted);
            }
        }
        let rec = Record::NeighFailed(Held::Borrowed(&*f));
        self.each(|s| s.record(&rec));
    }

    pub fn flush(&mut self) -> Flow {
        let counters = self.counters;
        self.each(|s| {
            s.progress(&counters);
            s.flush()
        });
        self.flow()
    }

    /// Flushes and finishes every sink left, whichever others failed; what failed is in
    /// `failures`.
    pub fn finish(&mut self) {
        self.drain_changes();
        let counters = self.counters;
        self.each(|s| s.flush().and_then(|_| s.finish(&counters)));
    }
}

/// A remedy read back from a trace, as it may be printed (only in a shape arp-trace writes):
/// `None` when it can be printed as it is.
fn vetted(v: Option<&Verdict<'_>>, netns: u32) -> Option<Remedy<'static>> {
    explain::shell::vet(v?.remedy.as_ref()?, netns)
}

#[cfg(test)]
mod tests;
