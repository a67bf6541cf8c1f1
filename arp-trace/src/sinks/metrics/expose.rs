//! The exposition: the aggregate, the run's fixed facts, this process's CPU and memory and
//! its BPF programs' run statistics as Prometheus metric families, written in the text format
//! (0.0.4) by the `prometheus` crate. Names follow Prometheus's rules (`arp_trace_` prefix,
//! `_total` counters, seconds and bytes) and node_exporter's labels (`device`).

use std::os::fd::AsRawFd;

use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, TextEncoder};

use super::{Fixed, Metrics, Series, State, OVERFLOW};

/// What the response's Content-Type says.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One family being built: name, help, type and samples.
struct Family(MetricFamily);

impl Family {
    fn new(name: &str, help: &str, kind: MetricType) -> Family {
        let mut f = MetricFamily::default();
        f.set_name(name.into());
        f.set_help(help.into());
        f.set_field_type(kind);
        Family(f)
    }

    fn counter(name: &str, help: &str) -> Family {
        Family::new(name, help, MetricType::COUNTER)
    }

    fn gauge(name: &str, help: &str) -> Family {
        Family::new(name, help, MetricType::GAUGE)
    }

    fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        let pairs = labels
            .iter()
            .map(|(k, v)| {
                let mut p = LabelPair::default();
                p.set_name((*k).into());
                p.set_value((*v).into());
                p
            })
            .collect();
        let mut m = Metric::from_label(pairs);
        if self.0.get_field_type() == MetricType::COUNTER {
            let mut c = Counter::default();
            c.set_value(value);
            m.set_counter(c);
        } else {
            let mut g = Gauge::default();
            g.set_value(value);
            m.set_gauge(g);
        }
        self.0.mut_metric().push(m);
    }

    /// Samples in label order, so successive scrapes read alike.
    fn done(mut self, out: &mut Vec<MetricFamily>) {
        if self.0.get_metric().is_empty() {
            return;
        }
        let key = |m: &Metric| -> Vec<String> {
            m.get_label()
                .iter()
                .map(|l| l.value().to_string())
                .collect()
        };
        self.0.mut_metric().sort_by_cached_key(key);
        out.push(self.0);
    }
}

/// A capped series' samples, its overflow series, and its size and folds for the
/// bookkeeping families.
fn series<K: std::hash::Hash + Eq>(
    f: &mut Family,
    s: &Series<K>,
    labels: impl Fn(&K) -> Vec<(&'static str, String)>,
    overflow: &[(&str, &str)],
    book: &mut Vec<(String, usize, u64)>,
) {
    for (k, v) in s.iter() {
        let l = labels(k);
        let l: Vec<(&str, &str)> = l.iter().map(|(a, b)| (*a, b.as_str())).collect();
        f.sample(&l, v as f64);
    }
    if let Some(v) = s.overflow() {
        f.sample(overflow, v as f64);
    }
    book.push((f.0.name().to_string(), s.len(), s.folded()));
}

fn opt_bool(b: Option<bool>) -> &'static str {
    match b {
        Some(true) => "true",
        Some(false) => "false",
        None => "unknown",
    }
}

/// The families of the aggregate.
fn aggregate(st: &State, out: &mut Vec<MetricFamily>) {
    let mut book = Vec::new();
    let ns = |ino: u32| st.netns_label(ino);
    let dev_labels =
        |k: &super::DeviceKey| vec![("netns", ns(k.netns)), ("device", k.device.to_string())];
    let dev_overflow = [("netns", OVERFLOW), ("device", OVERFLOW)];

    let mut f = Family::counter(
        "arp_trace_requests_total",
        "ARP requests, by direction (sent: transmitted by this host), namespace, device, the \
         reason the kernel chose the sender IP, and whether that IP is foreign to the device's \
         subnets (unknown: the namespace's facts could not be read).",
    );
    series(
        &mut f,
        &st.requests,
        |k| {
            vec![
                ("direction", "sent".into()),
                ("netns", ns(k.netns)),
                ("device", k.device.to_string()),
                ("reason", k.reason.map_or("unknown", |r| r.code()).into()),
                ("foreign", opt_bool(k.foreign).into()),
            ]
        },
        &[
            ("direction", "sent"),
            ("netns", OVERFLOW),
            ("device", OVERFLOW),
            ("reason", OVERFLOW),
            ("foreign", OVERFLOW),
        ],
        &mut book,
    );
    f.done(out);

    let mut f = Family::counter(
        "arp_trace_ndisc_total",
        "IPv6 neighbour solicitations and advertisements, by direction (sent: transmitted by \
         this host), namespace, device, op (solicit, advert), the reason the kernel chose the \
         source, and whether that source is foreign to the device's prefixes.",
    );
    series(
        &mut f,
        &st.ndisc,
        |k| {
            vec![
                ("direction", "sent".into()),
                ("netns", ns(k.netns)),
                ("device", k.device.to_string()),
                (
                    "op",
                    match k.op {
                        arp_trace_model::NdiscOp::Solicit => "solicit",
                        arp_trace_model::NdiscOp::Advert => "advert",
                    }
                    .into(),
                ),
                ("reason", k.reason.map_or("unknown", |r| r.code()).into()),
                ("foreign", opt_bool(k.foreign).into()),
            ]
        },
        &[
            ("direction", "sent"),
            ("netns", OVERFLOW),
            ("device", OVERFLOW),
            ("op", OVERFLOW),
            ("reason", OVERFLOW),
            ("foreign", OVERFLOW),
        ],
        &mut book,
    );
    f.done(out);

    let mut f = Family::counter(
        "arp_trace_foreign_sender_requests_total",
        "ARP requests whose sender IP is in none of the egress device's subnets, by namespace, \
         device and sender IP (only foreign senders are labelled).",
    );
    series(
        &mut f,
        &st.foreign,
        |k| {
            vec![
                ("netns", ns(k.netns)),
                ("device", k.device.to_string()),
                ("sender", k.sender.to_string()),
            ]
        },
        &[
            ("netns", OVERFLOW),
            ("device", OVERFLOW),
            ("sender", OVERFLOW),
        ],
        &mut book,
    );
    f.done(out);

    let dir_labels = |k: &super::DeviceKey| {
        let mut l = vec![("direction", "sent".to_string())];
        l.extend(dev_labels(k));
        l
    };
    let mut f = Family::counter(
        "arp_trace_replies_total",
        "ARP replies, by direction (sent: transmitted by this host), namespace and device.",
    );
    let dir_overflow = [
        ("direction", "sent"),
        ("netns", OVERFLOW),
        ("device", OVERFLOW),
    ];
    series(&mut f, &st.replies, dir_labels, &dir_overflow, &mut book);
    f.done(out);

    let mut f = Family::counter(
        "arp_trace_conflicts_total",
        "Address conflicts reported (each report: first sighting, then at most one per 10 s \
         while it goes on), by the namespace and device that received the frames and kind \
         (ip_moved, ip_on_two_links, foreign_sender_received, duplicate_address).",
    );
    series(
        &mut f,
        &st.conflicts,
        |k| {
            vec![
                ("netns", ns(k.netns)),
                ("device", k.device.to_string()),
                ("kind", k.kind.code().into()),
            ]
        },
        &[
            ("netns", OVERFLOW),
            ("device", OVERFLOW),
            ("kind", OVERFLOW),
        ],
        &mut book,
    );
    f.done(out);

    let mut f = Family::counter(
        "arp_trace_neigh_changes_total",
        "IPv4 neighbour entries whose link-layer address or validity an update changed, by \
         namespace, device and cause (received_arp, netlink, task, kernel).",
    );
    series(
        &mut f,
        &st.neigh_changes,
        |k| {
            vec![
                ("netns", ns(k.netns)),
                ("device", k.device.to_string()),
                ("cause", k.cause.code().into()),
            ]
        },
        &[
            ("netns", OVERFLOW),
            ("device", OVERFLOW),
            ("cause", OVERFLOW),
        ],
        &mut book,
    );
    f.done(out);

    let mut f = Family::counter(
        "arp_trace_received_total",
        "ARP frames the host's devices received from the wire, by namespace, device and op \
         (request, reply).",
    );
    series(
        &mut f,
        &st.received,
        |k| {
            vec![
                ("netns", ns(k.netns)),
                ("device", k.device.to_string()),
                (
                    "op",
                    match k.op {
                        arp_trace_model::ArpOp::Request => "request",
                        arp_trace_model::ArpOp::Reply => "reply",
                    }
                    .into(),
                ),
            ]
        },
        &[("netns", OVERFLOW), ("device", OVERFLOW), ("op", OVERFLOW)],
        &mut book,
    );
    f.done(out);

    let mut f = Family::counter(
        "arp_trace_neighbour_failures_total",
        "Neighbour entries that failed to resolve (no reply to any request), by namespace and \
         device.",
    );
    series(&mut f, &st.failures, dev_labels, &dev_overflow, &mut book);
    f.done(out);

    let mut f = Family::counter(
        "arp_trace_neighbour_dropped_packets_total",
        "Packets the kernel dropped with a failed neighbour entry, by namespace and device.",
    );
    series(&mut f, &st.dropped, dev_labels, &dev_overflow, &mut book);
    f.done(out);

    let mut f = Family::gauge(
        "arp_trace_arp_announce",
        "Effective net.ipv4.conf arp_announce, max(all, device), per device of every namespace \
         the tracer watches, as its last request or change said.",
    );
    series(&mut f, &st.announce, dev_labels, &dev_overflow, &mut book);
    f.done(out);

    let c = &st.counters;
    let mut f = Family::counter(
        "arp_trace_events_lost_total",
        "Events that never became records, by stage: ring_buffer (the kernel's ring buffer was \
         full), bpf_read (a BPF program discarded a record when a kernel read failed), \
         hook_busy (the kernel skipped a program already running on that CPU), facts_queue \
         (address or sysctl changes dropped because the event loop fell behind).",
    );
    for (stage, v) in [
        ("ring_buffer", c.lost),
        ("bpf_read", c.discarded),
        ("hook_busy", c.missed),
        ("facts_queue", c.changes_dropped),
    ] {
        f.sample(&[("stage", stage)], v as f64);
    }
    f.done(out);

    let mut f = Family::counter(
        "arp_trace_join_failures_total",
        "Kernel records that could not be joined, by stage: neighbour (a request shown without \
         its neighbour record: state, attempt and owner unknown), trigger (a trigger record \
         that matched no request).",
    );
    f.sample(&[("stage", "neighbour")], c.unjoined as f64);
    f.sample(&[("stage", "trigger")], c.unmatched as f64);
    f.done(out);

    let mut f = Family::counter(
        "arp_trace_records_skipped_total",
        "Records not counted above, by cause: filtered (excluded by -i, --netns or \
         --foreign-only), undecodable (ARP frames other than Ethernet/IPv4 request or reply).",
    );
    f.sample(&[("cause", "filtered")], c.filtered as f64);
    f.sample(&[("cause", "undecodable")], c.undecodable as f64);
    f.done(out);

    let mut size = Family::gauge(
        "arp_trace_metrics_series",
        "Label sets each capped metric holds now (the overflow series not included).",
    );
    let mut folded = Family::counter(
        "arp_trace_metrics_folded_total",
        "Updates a capped metric folded into its _overflow series (or, for a gauge, dropped) \
         because it held its cap of label sets.",
    );
    for (name, len, fold) in book {
        size.sample(&[("metric", &name)], len as f64);
        folded.sample(&[("metric", &name)], fold as f64);
    }
    size.done(out);
    folded.done(out);
}

/// The run's fixed facts as info gauges.
fn fixed(fx: &Fixed, out: &mut Vec<MetricFamily>) {
    let mut f = Family::gauge(
        "arp_trace_build_info",
        "Always 1: the arp-trace version and the commit it was built from.",
    );
    f.sample(
        &[
            ("version", &fx.version),
            ("commit", fx.commit.as_deref().unwrap_or("unknown")),
        ],
        1.0,
    );
    f.done(out);

    let mut f = Family::gauge(
        "arp_trace_hook_info",
        "Always 1: each kernel hook attached, with its role.",
    );
    for (role, hook) in &fx.hooks {
        f.sample(&[("role", role), ("hook", hook)], 1.0);
    }
    f.done(out);

    let mut f = Family::gauge(
        "arp_trace_solicit_path_info",
        "Always 1: how the packet behind each request is caught (fentry, kprobe or tracepoint).",
    );
    f.sample(&[("path", &fx.solicit_path)], 1.0);
    f.done(out);

    if let Some(t) = fx.started {
        let secs = t
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut f = Family::gauge(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds.",
        );
        f.sample(&[], secs);
        f.done(out);
    }
}

/// This process's CPU time and resident memory, as the Prometheus client libraries name them.
fn process(out: &mut Vec<MetricFamily>) {
    // SAFETY: rusage is plain data the kernel fills.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage of this process into our own struct.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } == 0 {
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        let mut f = Family::counter(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
        );
        f.sample(&[], tv(ru.ru_utime) + tv(ru.ru_stime));
        f.done(out);
    }
    let rss_pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok());
    if let Some(pages) = rss_pages {
        // SAFETY: sysconf has no failure mode for _SC_PAGESIZE.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
        let mut f = Family::gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
        );
        f.sample(&[], (pages * page) as f64);
        f.done(out);
    }
}

/// A `key:` field of an fdinfo text.
pub(super) fn fdinfo_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
}

/// The BPF programs' run count and time. The kernel counts them only while
/// `kernel.bpf_stats_enabled=1`, which the tracer reads and never sets.
fn bpf(fx: &Fixed, out: &mut Vec<MetricFamily>) {
    let enabled = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
        .is_ok_and(|s| s.trim() == "1");
    let mut f = Family::gauge(
        "arp_trace_bpf_stats_enabled",
        "1 while kernel.bpf_stats_enabled=1, when the kernel counts BPF program runs and run \
         time (arp-trace reads that sysctl, never sets it).",
    );
    f.sample(&[], if enabled { 1.0 } else { 0.0 });
    f.done(out);
    if !enabled {
        return;
    }
    let mut runs = Family::counter(
        "arp_trace_bpf_program_runs_total",
        "Runs of each of arp-trace's BPF programs (counted while bpf_stats_enabled=1).",
    );
    let mut time = Family::counter(
        "arp_trace_bpf_program_run_seconds_total",
        "Time spent in each of arp-trace's BPF programs, in seconds (counted while \
         bpf_stats_enabled=1).",
    );
    for p in &fx.programs {
        let path = format!("/proc/self/fdinfo/{}", p.fd.as_raw_fd());
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        let labels = [("program", p.name.as_str()), ("hook", p.hook.as_str())];
        if let Some(n) = fdinfo_field(&text, "run_cnt") {
            runs.sample(&labels, n as f64);
        }
        if let Some(ns) = fdinfo_field(&text, "run_time_ns") {
            time.sample(&labels, ns as f64 / 1e9);
        }
    }
    runs.done(out);
    time.done(out);
}

impl Metrics {
    /// Every family, the aggregate read under the lock and the rest after it.
    pub fn families(&self) -> Vec<MetricFamily> {
        let mut out = Vec::new();
        aggregate(&self.lock(), &mut out);
        fixed(self.fixed(), &mut out);
        process(&mut out);
        bpf(self.fixed(), &mut out);
        out
    }

    /// The text the server sends.
    pub fn text(&self) -> Result<Vec<u8>, String> {
        let mut buf = Vec::with_capacity(16 * 1024);
        TextEncoder::new()
            .encode(&self.families(), &mut buf)
            .map_err(|e| format!("cannot encode the metrics: {e}"))?;
        Ok(buf)
    }
}
