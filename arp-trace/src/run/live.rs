//! The live source: reads records from the kernel's ring buffer and feeds the pipeline until
//! Ctrl-C, SIGTERM, `-c` or a closed output ends the run.

use std::os::fd::AsFd;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use arp_trace_model::file::FORMAT_VERSION;
use arp_trace_model::{Header, Time};
use tokio::io::unix::AsyncFd;

use super::{add_files, counts_line, failed_outputs, pipeline, Source};
use crate::attribution::{Joined, Joiner};
use crate::cli::Args;
use crate::kernel::btf::Btf;
use crate::kernel::hooks::{SolicitPath, HOOKS};
use crate::kernel::kallsyms::Kallsyms;
use crate::kernel::loader::{self, LoadOptions, Tracer};
use crate::kernel::ndisc;
use crate::kernel::privileges;
use crate::kernel::ring::{self, Raw};
use crate::netns::watch::Watchers;
use crate::pipeline::{Counters, Flow, Owned, Pipeline};
use crate::sinks::metrics::{self, Fixed, Metrics, Program};
use crate::sinks::outfile::Files;

fn scope_text(args: &Args) -> String {
    let ifs = if args.interfaces.is_empty() {
        "all interfaces".to_string()
    } else {
        format!("interface {}", args.interfaces.join(", "))
    };
    let ns = if args.netns.is_empty() {
        "all network namespaces".to_string()
    } else {
        format!("network namespace {}", args.netns.join(", "))
    };
    format!("{ifs} in {ns}")
}

/// Why each better solicit path was not used, for the start-up line.
pub fn passed_over_text(passed: &[(SolicitPath, String)]) -> String {
    if passed.is_empty() {
        return String::new();
    }
    let why: Vec<String> = passed
        .iter()
        .map(|(p, w)| format!("{}: {w}", p.name()))
        .collect();
    format!(" (not used: {})", why.join("; "))
}

/// The header of a live run: with the snapshot of every namespace taken now for a trace file,
/// without it (the `ip netns` names only) for `--json` alone.
fn live_header(hooks: String, own_netns: Option<u32>, snapshot: bool) -> Header {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let (snapshot, names) = if snapshot {
        let (s, names) = crate::netns::snapshot::take(own_netns);
        (Some(s), names)
    } else {
        (None, crate::netns::snapshot::names())
    };
    Header {
        format_version: FORMAT_VERSION,
        schema_version: arp_trace_model::SCHEMA_VERSION,
        arp_trace_version: env!("CARGO_PKG_VERSION").into(),
        kernel_release: read("/proc/sys/kernel/osrelease"),
        hostname: read("/proc/sys/kernel/hostname"),
        start_time: Time::now(),
        hooks,
        own_netns,
        netns_names: names,
        snapshot,
    }
}

/// Runs until stopped; returns the final counts (already printed to stderr).
pub fn run(args: &Args) -> Result<Counters> {
    // Before any thread exists, so every thread inherits the block (see signals.rs).
    super::signals::block().context("cannot block SIGINT and SIGTERM")?;
    let short = privileges::check().map_err(anyhow::Error::msg)?;
    if !short.is_empty() {
        eprintln!(
            "arp-trace: warning: without {} arp-trace cannot {}",
            privileges::names(&short),
            short
                .iter()
                .map(|n| n.why)
                .collect::<Vec<_>>()
                .join("; nor ")
        );
    }
    let mut pipeline = pipeline(args, &Source::Live)?;
    // Before anything is loaded: a port in use ends the run here, with its cause.
    let listener = match args.metrics {
        Some(addr) => Some(metrics::http::listen(addr).map_err(anyhow::Error::msg)?),
        None => None,
    };
    // Both are read whole at every start; side by side they take the time of the longer.
    let syms = std::thread::spawn(Kallsyms::load);
    let btf = Btf::from_sys_fs()?;
    let syms = syms
        .join()
        .map_err(|_| anyhow::anyhow!("reading /proc/kallsyms failed"))??;
    let queuefull = btf
        .enum_value("skb_drop_reason", "SKB_DROP_REASON_NEIGH_QUEUEFULL")
        .unwrap_or(0);
    // `--direction out` needs neither the receive hook nor the conflicts found in its frames.
    let receive = args.direction.only() != Some(arp_trace_model::Direction::Out);
    let mut tracer = Tracer::load(
        btf,
        &syms,
        &LoadOptions {
            buffer_bytes: args.buffer_kib() * 1024,
            hooks: args.hooks(),
            receive,
        },
    )?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the event loop")?;
    let mut joiner = Joiner::new(ring::monotonic_to_realtime_offset());
    joiner.queuefull_reason = queuefull as u32;
    pipeline.facts = Some(Box::new(Watchers::new()));
    // Received frames are where conflicts show; a trace carries what was found, so replay
    // does not look again.
    if receive {
        pipeline.conflicts = Some(crate::conflicts::Detector::default());
    }
    rt.block_on(stream(args, pipeline, &mut tracer, joiner, listener))
}

/// What `--metrics` reports besides the records: the build, the hooks and their programs.
fn fixed_facts(tracer: &Tracer, listen: Option<std::net::SocketAddr>) -> Fixed {
    let programs = tracer
        .ebpf
        .programs()
        .filter_map(|(name, prog)| {
            // Only loaded programs have a descriptor; a duplicate keeps its fdinfo readable
            // by the server independently of aya's handle.
            let fd = prog.fd().ok()?.as_fd().try_clone_to_owned().ok()?;
            let hook = HOOKS
                .iter()
                .find(|h| h.program == Some(name))
                .map_or(name, |h| h.attach);
            Some(Program {
                name: name.to_string(),
                hook: hook.to_string(),
                fd,
            })
        })
        .collect();
    Fixed {
        version: env!("CARGO_PKG_VERSION").into(),
        commit: crate::version::commit().map(str::to_string),
        hooks: tracer
            .hooks
            .iter()
            .map(|h| (h.role.to_string(), h.name.to_string()))
            .collect(),
        solicit_path: tracer.solicit.name().into(),
        programs,
        started: metrics::process_start().or(Some(SystemTime::now())),
        listen,
    }
}

/// Hands joined events to the pipeline, and their boxes back to the joiner for reuse.
fn deliver(pipeline: &mut Pipeline, joiner: &mut Joiner, joined: &mut Vec<Joined>) -> Flow {
    let mut flow = pipeline.flow();
    for mut j in joined.drain(..) {
        if flow == Flow::Stop {
            continue;
        }
        flow = match &mut j {
            Joined::Arp(ev) => pipeline.push_owned(Owned::Arp(ev)),
            Joined::Ndisc(ev) => pipeline.push_owned(Owned::Ndisc(ev)),
            Joined::Failed(f) => pipeline.push_owned(Owned::Failed(f)),
            Joined::Change(c) => pipeline.push_owned(Owned::Change(c)),
        };
        joiner.recycle(j);
    }
    flow
}

/// Reads every record the ring buffer holds into the joiner: how many.
fn drain(
    rb: &mut aya::maps::RingBuf<aya::maps::MapData>,
    joiner: &mut Joiner,
    pipeline: &mut Pipeline,
    clock: i128,
    out: &mut Vec<Joined>,
) -> usize {
    let mut n = 0;
    while let Some(item) = rb.next() {
        ingest(joiner, pipeline, &item, clock, out);
        n += 1;
    }
    n
}

/// Decodes one ring buffer sample's records into the joiner.
fn ingest(
    joiner: &mut Joiner,
    pipeline: &mut Pipeline,
    bytes: &[u8],
    clock: i128,
    out: &mut Vec<Joined>,
) {
    for raw in ring::records(bytes) {
        match raw {
            Raw::Arp(raw) => match ring::decode_arp(&raw, clock) {
                Ok(ev) => {
                    let from_solicit = ring::from_solicit(&raw, &ev);
                    joiner.arp(raw.cpu, raw.seq, ev, from_solicit, out)
                }
                Err(_) => pipeline.skipped(),
            },
            // Nothing joins a received frame: it passes on in its place among the others.
            Raw::ArpRecv(raw) => match ring::decode_recv(&raw, clock) {
                Ok(ev) => joiner.arp(raw.cpu, 0, ev, false, out),
                Err(_) => pipeline.skipped(),
            },
            Raw::Ndisc(raw) => match ndisc::decode_ndisc(&raw, clock) {
                Ok(ev) => {
                    let from_solicit = ndisc::from_solicit(&ev);
                    joiner.ndisc(raw.cpu, raw.seq, ev, from_solicit, out)
                }
                Err(_) => pipeline.skipped(),
            },
            Raw::Trigger(raw) => joiner.trigger(&raw),
            Raw::Neigh(raw) => joiner.neigh(&raw, out),
            Raw::NeighChange(raw) => joiner.change(&raw, out),
            Raw::Unknown => {}
        }
    }
}

async fn stream(
    args: &Args,
    mut pipeline: Pipeline,
    tracer: &mut Tracer,
    mut joiner: Joiner,
    listener: Option<std::net::TcpListener>,
) -> Result<Counters> {
    let ring = tracer.events()?;
    let lost_map = tracer.lost()?;
    let discarded_map = tracer.discarded()?;
    let mut bpf_log = aya_log::EbpfLogger::init(&mut tracer.ebpf).ok();
    let stop = super::signals::watch().context("cannot watch for Ctrl-C")?;
    // SAFETY: the AsyncFd owns the Stop, so its eventfd stays open while it is registered.
    let stop = unsafe { AsyncFd::register_with_interest(stop, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("cannot poll for signals: {e}"))?;
    // SAFETY: the AsyncFd owns the ring buffer, so the fd stays open while it is registered.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("cannot poll the ring buffer: {e}"))?;

    let hooks: Vec<String> = tracer.hooks.iter().map(ToString::to_string).collect();
    let hooks = hooks.join(", ");
    // The server task, aborted when tracing ends; the address it really has (port 0 picks one).
    let mut server = None;
    let mut serving = None;
    if let Some(l) = listener {
        let listener = tokio::net::TcpListener::from_std(l)
            .map_err(|e| anyhow::anyhow!("--metrics: cannot serve: {e}"))?;
        let addr = listener.local_addr()?;
        let m = Metrics::new(fixed_facts(tracer, Some(addr)));
        pipeline.sinks.push(Box::new(m.sink()));
        server = Some(tokio::spawn(metrics::http::serve(listener, m)));
        serving = Some(addr);
    }
    eprintln!(
        "arp-trace: tracing ARP and IPv6 neighbour discovery on {}; hooks: {hooks}{}{}; Ctrl-C \
         to stop",
        scope_text(args),
        passed_over_text(&tracer.passed_over),
        serving.map_or(String::new(), |a| format!(
            "; metrics at http://{a}/metrics"
        ))
    );
    let mut files = Files::default();
    let own = pipeline.names.own();
    // One header for the trace file and the `--json` line, so that replaying the file prints
    // that line again byte for byte; a rotated file after the first takes its own.
    let header = live_header(hooks.clone(), own, args.write.is_some());
    if args.write.is_some() || args.pcap.is_some() {
        let hooks = hooks.clone();
        let mut first = Some(header.clone());
        add_files(
            &mut pipeline,
            args,
            Box::new(move || {
                first
                    .take()
                    .unwrap_or_else(|| live_header(hooks.clone(), own, true))
            }),
            &mut files,
        )?;
    }
    pipeline.header(&header);
    // Held to the end of the run: its drop removes the file, on every way out.
    let _ready = match &args.ready_file {
        Some(path) => {
            let mut text = format!("pid={}\nhooks={hooks}\n", std::process::id());
            if let Some(a) = serving {
                text.push_str(&format!("metrics={a}\n"));
            }
            Some(files.ready_file(path, &text)?)
        }
        None => None,
    };

    // The joiner's own offset: request times and record times must compare exactly.
    let clock = joiner.clock_offset();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut reported_lost = 0u64;
    let mut reported_missed = 0u64;
    let mut done = false;

    let mut joined: Vec<Joined> = Vec::new();
    let mut join_tick = tokio::time::interval(crate::attribution::JOIN_WAIT / 2);
    // Without --summary-interval the timer never fires; a year is far enough and, unlike the
    // largest Duration, cannot overflow an Instant.
    let every = Duration::from_secs(args.summary_interval.unwrap_or(crate::cli::MAX_INTERVAL));
    let mut summary_tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    // The programs wake this reader at most once per WAKE_GAP_NS; after each wakeup and
    // while records keep coming it polls at that interval. It stops once a poll finds nothing
    // more than two gaps after the last wakeup or record: any record since has woken it (or
    // been made within a gap of one that did, which the poll before that would have found).
    // A wakeup that finds nothing counts too: a record still being written on another CPU
    // holds back those committed behind it, and when it is committed it may not wake us.
    // A record's wake decision is made at its time, not at its commit: preempted or with its
    // vCPU descheduled in between, it can commit after the polling stopped and wake nobody,
    // so the one-second tick reads the ring as well and such a record waits at most that.
    let gap = Duration::from_nanos(arp_trace_common::WAKE_GAP_NS);
    let mut poll_tick = tokio::time::interval(gap);
    poll_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut polling = false;
    let mut last_record = std::time::Instant::now();
    while !done {
        tokio::select! {
            guard = stop.readable() => {
                let mut guard = guard?;
                guard.clear_ready();
                done = guard.get_inner().take().is_some();
            }
            _ = join_tick.tick(), if joiner.has_pending() || pipeline.holds() => {
                // Read what the kernel already queued first: after this process was not
                // scheduled for JOIN_WAIT, the records that complete a pending request are
                // sitting in the ring, and expiring before reading them loses the trigger.
                if drain(ring.get_mut(), &mut joiner, &mut pipeline, clock, &mut joined) > 0 {
                    (polling, last_record) = (true, std::time::Instant::now());
                }
                joiner.expire(false, &mut joined);
                deliver(&mut pipeline, &mut joiner, &mut joined);
                pipeline.release_held(false);
                done = pipeline.flush() == Flow::Stop;
            }
            _ = poll_tick.tick(), if polling => {
                if drain(ring.get_mut(), &mut joiner, &mut pipeline, clock, &mut joined) > 0 {
                    last_record = std::time::Instant::now();
                    deliver(&mut pipeline, &mut joiner, &mut joined);
                    done = pipeline.flush() == Flow::Stop;
                } else if last_record.elapsed() > 2 * gap {
                    polling = false;
                }
            }
            _ = summary_tick.tick(), if args.summary_interval.is_some() => {
                pipeline.flush();
                done = pipeline.tick() == Flow::Stop;
            }
            _ = tick.tick() => {
                if drain(ring.get_mut(), &mut joiner, &mut pipeline, clock, &mut joined) > 0 {
                    (polling, last_record) = (true, std::time::Instant::now());
                    deliver(&mut pipeline, &mut joiner, &mut joined);
                }
                if let Some(l) = bpf_log.as_mut() { l.flush(); }
                pipeline.drain_changes();
                // The kernel's and the joiner's counts, for sinks that report while running
                // (--metrics, each rotated file's trailer).
                let c = &mut pipeline.counters;
                c.lost = loader::read_lost(&lost_map);
                c.discarded = loader::read_lost(&discarded_map);
                c.missed = loader::recursion_misses();
                c.unjoined = joiner.unjoined;
                c.unmatched = joiner.unmatched;
                done = pipeline.flush() == Flow::Stop;
                let lost = pipeline.counters.lost;
                if lost > reported_lost {
                    eprintln!(
                        "arp-trace: {} events lost so far: the ring buffer was full; raise -B/--buffer-size",
                        lost
                    );
                    reported_lost = lost;
                }
                let missed = pipeline.counters.missed;
                if missed > reported_missed {
                    eprintln!(
                        "arp-trace: {missed} hook runs missed so far: the kernel skipped a program \
                         already running on that CPU"
                    );
                    reported_missed = missed;
                }
            }
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                // Cleared before draining: the programs wake us at most once per gap, so a
                // wakeup during the drain must not be wiped afterwards.
                guard.clear_ready();
                let rb = guard.get_inner_mut();
                drain(rb, &mut joiner, &mut pipeline, clock, &mut joined);
                (polling, last_record) = (true, std::time::Instant::now());
                deliver(&mut pipeline, &mut joiner, &mut joined);
                done = pipeline.flush() == Flow::Stop;
            }
        }
    }

    // Deliver what the kernel already queued before the stop, unless -c, a failed output or
    // the last reader going away ended it.
    if pipeline.flow() == Flow::Continue {
        drain(
            ring.get_mut(),
            &mut joiner,
            &mut pipeline,
            clock,
            &mut joined,
        );
        joiner.expire(true, &mut joined);
        deliver(&mut pipeline, &mut joiner, &mut joined);
        pipeline.release_held(true);
    }
    pipeline.counters.lost = loader::read_lost(&lost_map);
    pipeline.counters.discarded = loader::read_lost(&discarded_map);
    pipeline.counters.missed = loader::recursion_misses();
    pipeline.counters.unjoined = joiner.unjoined;
    pipeline.counters.unmatched = joiner.unmatched;
    if let Some(s) = server {
        s.abort();
    }
    pipeline.finish();
    eprintln!("arp-trace: {}", counts_line(&pipeline.counters));
    failed_outputs(&pipeline)?;
    Ok(pipeline.counters)
}
