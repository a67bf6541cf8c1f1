//! Figures 2 and 3: a storm of ARP requests and IPv6 neighbour solicitations from several
//! namespaces with silent peers, one sending thread each, counted by tcpdump and by the
//! tracer, with the tracer's CPU and memory; also the rate at which something gives way.
//! Long because the namespaces, the generator that paces against their neighbour timers and
//! the counting of one run depend on each other's numbers (targets, rest time, tables).

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::stats::{
    json_requests, lost_from_counts, opt, pcap_solicitations, reasons_text, tcpdump_dropped,
};
use super::system::{
    check_interrupt, cpu_secs_so_far, netns, pause, status_kib, Netns, NetnsExt, Proc, TmpFiles,
    Tracer, Usage, INTERRUPTED,
};
use super::tcp::{stat_delta, BpfStats, ProgStat};

/// Storm namespaces: each has its own veth, its own targets and its own sending thread.
pub(super) const NAMESPACES: usize = 4;

/// Live storm entries per neighbour table (ARP, ND), all namespaces together. Both tables are
/// global and their default `gc_thresh2` is 512: staying well under it, with room for the
/// rest of the machine's entries, keeps the storm from forcing garbage collection of them.
pub(super) const PER_TABLE: usize = 448;

// Under the default gc_thresh2, an equal share per namespace, and IPv4 shares that fit in
// the 506 host addresses.
const _: () = assert!(PER_TABLE < 512 && PER_TABLE.is_multiple_of(NAMESPACES) && PER_TABLE <= 506);

/// The namespaces' own IPv4 host number in both /24s.
const OWN_V4_HOST: u8 = 10;

/// Every host address of 198.51.100.0/24 and 203.0.113.0/24 except the namespaces' own .10:
/// 506 on-link addresses nobody answers.
pub(super) fn v4_hosts() -> Vec<Ipv4Addr> {
    let mut v = Vec::new();
    for net in [[198, 51, 100], [203, 0, 113]] {
        for h in 1..=254u8 {
            if h != OWN_V4_HOST {
                v.push(Ipv4Addr::new(net[0], net[1], net[2], h));
            }
        }
    }
    v
}

/// Target `h` in namespace `i`'s own /64, 2001:db8:14:i::/64: 2001:db8:14:i:0:h:0:100.
/// The targets differ only above their low 24 bits, so they share one solicited-node group
/// (ff02::1:ff00:100): each solicitation goes to a multicast address that has its own entry
/// in the ND table, and distinct groups would double the storm's share of that table.
pub(super) fn v6_target(i: usize, h: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0x14, i as u16, 0, h, 0, 0x100)
}

/// Namespace `i`'s own IPv6 address (outside its targets' solicited-node group).
fn own_v6(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0x14, i as u16, 0, 0, 0, 1)
}

/// Namespace `i` of `n`: its share of [`PER_TABLE`] in each family, IPv4 and IPv6
/// alternating so each table sees the same rate. The IPv4 shares are disjoint slices of
/// [`v4_hosts`] (the namespaces could reuse them, but distinct targets make a trace readable).
pub(super) fn storm_targets(i: usize, n: usize) -> Vec<IpAddr> {
    let per = PER_TABLE / n;
    let v4 = v4_hosts();
    let mut v = Vec::with_capacity(2 * per);
    for (h, a) in v4[i * per..(i + 1) * per].iter().enumerate() {
        v.push(IpAddr::V4(*a));
        v.push(IpAddr::V6(v6_target(i, h as u16)));
    }
    v
}

#[derive(Debug, Default, Clone, Copy)]
pub(super) struct GenStats {
    pub(super) sent: u64,
    refused: u64,
    /// errno of the last refused send.
    last_errno: i32,
    pub(super) secs: f64,
    /// Times a target was due again before its last solicitation could have failed: the
    /// sending thread waited instead (it had fallen behind, or the rate is over its ceiling).
    held: u64,
    /// The sending threads' own CPU time (user + system, including the softirq work their
    /// sends run inline).
    pub(super) cpu_secs: f64,
}

/// How long a target rests between two datagrams: its entry must have failed, or the second
/// datagram would be queued behind the first's solicitation instead of causing one. The entry
/// fails when its timer expires, max(retrans_time, HZ/100) = 2 jiffies after the request
/// (at most 8 ms at HZ=250: the request goes out somewhere inside a jiffy), plus a jiffy for
/// a late timer softirq. `jiffy_ms` is retrans_time_ms written as 1 and read back.
pub(super) fn min_rest(jiffy_ms: u64) -> Duration {
    let jiffy_ms = jiffy_ms.max(1);
    let hz = 1000 / jiffy_ms;
    let floor_jiffies = (hz / 100).max(1);
    Duration::from_millis((floor_jiffies + 1) * jiffy_ms)
}

/// The calling thread's CPU time, seconds.
fn thread_cpu_secs() -> f64 {
    // SAFETY: rusage is plain data, filled by the kernel for this thread.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to our own struct.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// A UDP socket of the family of `bind` whose send buffer holds the datagrams waiting on
/// their neighbour entries.
fn storm_socket(bind: &str) -> Result<UdpSocket> {
    let sock = UdpSocket::bind(bind)?;
    sock.set_nonblocking(true)?;
    // Datagrams wait on their neighbour entry until it fails (8 ms) and count against the
    // socket's send buffer meanwhile; the default buffer would refuse sends at about 15,000/s.
    // SO_SNDBUFFORCE is a per-socket setting (root), not a sysctl.
    let size: libc::c_int = 64 << 20;
    // SAFETY: setsockopt with a valid int option on our own socket.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUFFORCE,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        bail!("SO_SNDBUFFORCE: {}", std::io::Error::last_os_error());
    }
    Ok(sock)
}

/// Sends UDP datagrams round-robin over `targets` at `rate` per second for `dur`, from the
/// calling thread's namespace, never to a target that had one less than `rest` ago.
pub(super) fn generate(
    targets: Vec<IpAddr>,
    rate: u64,
    dur: Duration,
    rest: Duration,
) -> Result<GenStats> {
    let v4 = storm_socket("0.0.0.0:0")?;
    let v6 = storm_socket("[::]:0")?;
    let cpu0 = thread_cpu_secs();
    let start = Instant::now();
    let mut last: Vec<Option<Instant>> = vec![None; targets.len()];
    let mut g = GenStats::default();
    let mut i = 0usize;
    loop {
        let el = start.elapsed();
        if el >= dur || INTERRUPTED.load(Ordering::Relaxed) {
            g.secs = el.as_secs_f64();
            g.cpu_secs = thread_cpu_secs() - cpu0;
            return Ok(g);
        }
        let due = (rate as f64 * el.as_secs_f64()) as u64;
        while g.sent + g.refused < due {
            let k = i % targets.len();
            let now = Instant::now();
            // A thread that stalled (2 CPUs, shared) catches up only as fast as entries fail;
            // a burst past that would queue datagrams on INCOMPLETE entries, not solicit.
            if last[k].is_some_and(|t| now - t < rest) {
                g.held += 1;
                break;
            }
            last[k] = Some(now);
            let dst = targets[k];
            i += 1;
            let sock = if dst.is_ipv4() { &v4 } else { &v6 };
            match sock.send_to(b"arp-trace-bench", SocketAddr::new(dst, 9)) {
                Ok(_) => g.sent += 1,
                Err(e) => {
                    g.refused += 1;
                    g.last_errno = e.raw_os_error().unwrap_or(0);
                }
            }
        }
        thread::sleep(Duration::from_micros(200));
    }
}

/// The storm's namespaces: in each (number i), eth3 (198.51.100.10/24, 203.0.113.10/24,
/// 2001:db8:14:i::1/64) and its silent peer eth4.
pub(super) struct Storm {
    pub(super) nss: Vec<Netns>,
    /// eth3's `retrans_time_ms` as the kernel stored it (whole jiffies), read back.
    pub(super) retrans_ms: String,
    /// See [`min_rest`].
    pub(super) rest: Duration,
}

impl Storm {
    pub(super) fn new() -> Result<Storm> {
        let mut nss = Vec::new();
        let mut retrans_ms = String::new();
        for i in 0..NAMESPACES {
            let ns = netns(&format!("st{i}"))?;
            // IPv6 back on for eth3, without a link-local address: no DAD or router
            // solicitations of its own; solicitations leave from the global address.
            for (k, v) in [
                ("net/ipv6/conf/default/addr_gen_mode", "1"),
                ("net/ipv6/conf/default/accept_dad", "0"),
                ("net/ipv6/conf/all/disable_ipv6", "0"),
                ("net/ipv6/conf/default/disable_ipv6", "0"),
            ] {
                ns.try_sysctl(k, v)?;
            }
            ns.try_ip(&[
                "link", "add", "eth3", "type", "veth", "peer", "name", "eth4",
            ])?;
            // The peer stays silent: no address in either family, and IPv6 off so the
            // solicitations are dropped at once.
            ns.try_sysctl("net/ipv6/conf/eth4/disable_ipv6", "1")?;
            ns.try_ip(&["addr", "add", "198.51.100.10/24", "dev", "eth3"])?;
            ns.try_ip(&["addr", "add", "203.0.113.10/24", "dev", "eth3"])?;
            let own6 = format!("{}/64", own_v6(i));
            ns.try_ip(&["-6", "addr", "add", &own6, "dev", "eth3", "nodad"])?;
            // One solicitation per resolution, failing after the kernel's floor, so a target
            // can be solicited again moments later: a FAILED entry goes back to INCOMPLETE and
            // the kernel sends a new solicitation at once. retrans_time_ms=1 is stored as one
            // jiffy; the kernel then waits max(retrans_time, HZ/100) = 2 jiffies (8 ms at
            // HZ=250). These are eth3's own parameters, inside this namespace; the global
            // gc_thresh* limits are left alone (see BENCHMARKS.md).
            for fam in ["ipv4", "ipv6"] {
                ns.try_sysctl(&format!("net/{fam}/neigh/eth3/mcast_solicit"), "1")?;
                ns.try_sysctl(&format!("net/{fam}/neigh/eth3/app_solicit"), "0")?;
                retrans_ms =
                    ns.try_sysctl(&format!("net/{fam}/neigh/eth3/retrans_time_ms"), "1")?;
            }
            ns.try_ip(&["link", "set", "eth3", "up"])?;
            ns.try_ip(&["link", "set", "eth4", "up"])?;
            ns.wait_up("eth3")?;
            nss.push(ns);
        }
        let rest = min_rest(retrans_ms.parse().unwrap_or(10));
        Ok(Storm {
            nss,
            retrans_ms,
            rest,
        })
    }

    /// arp-trace's filter: the storm's namespaces and eth3.
    pub(super) fn filter_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        for ns in &self.nss {
            a.push("--netns".to_string());
            a.push(ns.name().to_string());
        }
        a.extend(["-i".to_string(), "eth3".to_string()]);
        a
    }

    /// `rate` datagrams per second for `dur`, shared out between one thread per namespace.
    pub(super) fn generate(&self, rate: u64, dur: Duration) -> Result<GenStats> {
        let n = self.nss.len();
        thread::scope(|s| {
            let threads: Vec<_> = self
                .nss
                .iter()
                .enumerate()
                .map(|(i, ns)| {
                    let targets = storm_targets(i, n);
                    let r = rate / n as u64 + u64::from((i as u64) < rate % n as u64);
                    let rest = self.rest;
                    s.spawn(move || ns.try_run_in(move || generate(targets, r, dur, rest)))
                })
                .collect();
            let mut g = GenStats::default();
            for t in threads {
                let x = t.join().unwrap_or_else(|p| std::panic::resume_unwind(p))?;
                g.sent += x.sent;
                g.refused += x.refused;
                if x.refused > 0 {
                    g.last_errno = x.last_errno;
                }
                g.secs = g.secs.max(x.secs);
                g.held += x.held;
                g.cpu_secs += x.cpu_secs;
            }
            Ok(g)
        })
    }

    /// One tcpdump per namespace on eth3, once each listens.
    pub(super) fn start_tcpdumps(&self, files: &mut TmpFiles) -> Result<Tcpdumps> {
        let mut v = Vec::new();
        for (i, ns) in self.nss.iter().enumerate() {
            v.push(start_tcpdump(ns, files, i)?);
        }
        Ok(Tcpdumps(v))
    }
}

/// What the tcpdumps saw: ARP requests, neighbour solicitations and their own drops.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Seen {
    pub(super) arp: u64,
    pub(super) ndisc: u64,
    pub(super) dropped: Option<u64>,
}

impl Seen {
    pub(super) fn total(&self) -> u64 {
        self.arp + self.ndisc
    }
}

/// How long to wait after a storm before stopping its readers. tcpdump reads the capture ring
/// in blocks that the kernel hands over when full or after its 1 s timeout, and loses the
/// block in progress when stopped: stopped 0.3 s after the storm, it missed its last ~0.1 s
/// (3 % of a 3 s run) without counting a drop.
pub(super) const DRAIN: Duration = Duration::from_millis(1200);

pub(super) struct Tcpdumps(Vec<(Proc, PathBuf, PathBuf)>);

impl Tcpdumps {
    pub(super) fn stop(self) -> Result<Seen> {
        let mut seen = Seen::default();
        for (mut p, pcap, err) in self.0 {
            p.stop()?;
            let c = pcap_solicitations(&std::fs::read(&pcap)?)?;
            seen.arp += c.arp;
            seen.ndisc += c.ndisc;
            if let Some(d) = tcpdump_dropped(&std::fs::read_to_string(&err).unwrap_or_default()) {
                seen.dropped = Some(seen.dropped.unwrap_or(0) + d);
            }
        }
        Ok(seen)
    }
}

/// The global neighbour tables' figures from `/proc/net/stat/{arp,ndisc}_cache` (read in the
/// root namespace; the counters are the tables', not a namespace's).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct TableStat {
    pub(super) entries: u64,
    pub(super) forced_gc_runs: u64,
    pub(super) table_fulls: u64,
}

pub(super) fn table_stat(file: &str) -> Option<TableStat> {
    parse_table_stat(&std::fs::read_to_string(format!("/proc/net/stat/{file}")).ok()?)
}

/// The header names the columns; each line after it is one CPU's counters (all hex), except
/// `entries`, which is the table's and repeated on every line.
pub(super) fn parse_table_stat(text: &str) -> Option<TableStat> {
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next()?.split_whitespace().collect();
    let col = |name: &str| head.iter().position(|h| *h == name);
    let (e, f, t) = (col("entries")?, col("forced_gc_runs")?, col("table_fulls")?);
    let mut st = TableStat::default();
    for l in lines {
        let w: Vec<u64> = l
            .split_whitespace()
            .map(|x| u64::from_str_radix(x, 16))
            .collect::<Result<_, _>>()
            .ok()?;
        st.entries = *w.get(e)?;
        st.forced_gc_runs += *w.get(f)?;
        st.table_fulls += *w.get(t)?;
    }
    Some(st)
}

/// Both tables: (ARP, ND).
pub(super) fn tables() -> (TableStat, TableStat) {
    (
        table_stat("arp_cache").unwrap_or_default(),
        table_stat("ndisc_cache").unwrap_or_default(),
    )
}

#[derive(Debug, Clone)]
pub(super) struct StormRun {
    rate: u64,
    gen: GenStats,
    /// ARP requests plus neighbour solicitations tcpdump saw, and the split.
    pub(super) tcpdump: u64,
    pub(super) seen: Seen,
    pub(super) captured: u64,
    pub(super) attributed: u64,
    /// Why requests were not attributed, with counts.
    pub(super) misses: BTreeMap<String, u64>,
    pub(super) lost: Option<u64>,
    pub(super) usage: Usage,
    /// arp-trace's CPU seconds when the storm began: start-up and the pause after it.
    pub(super) cpu_before_storm: Option<f64>,
    /// Of which system time.
    pub(super) sys_before_storm: Option<f64>,
    /// Start-up peak, and anonymous and file-backed (binary, ring buffer mapping) resident
    /// memory at the end of the storm, KiB.
    pub(super) startup_hwm_kib: Option<u64>,
    pub(super) anon_kib: Option<u64>,
    pub(super) file_kib: Option<u64>,
    /// BPF program statistics and the seconds they cover (only when asked for).
    pub(super) prog: (Vec<ProgStat>, f64),
    /// Up to 1,000 captured request lines, to build the replay trace from.
    pub(super) samples: Vec<String>,
    /// The most entries the ARP and ND tables held during the run (whole machine), and the
    /// forced garbage collections and overflows they counted meanwhile.
    pub(super) peak_entries: (u64, u64),
    pub(super) forced_gc: u64,
    pub(super) table_fulls: u64,
}

impl StormRun {
    pub(super) fn ratio(&self) -> Option<f64> {
        (self.tcpdump > 0).then(|| self.attributed as f64 / self.tcpdump as f64)
    }
    pub(super) fn seen_rate(&self) -> f64 {
        self.tcpdump as f64 / self.gen.secs.max(1e-9)
    }
    /// arp-trace's CPU (user + system) per captured solicitation, µs.
    pub(super) fn cpu_us_per_req(&self) -> Option<f64> {
        (self.captured > 0).then(|| self.usage.cpu_secs / self.captured as f64 * 1e6)
    }
    /// ` (others: ...)` naming the unattributed requests, or nothing.
    pub(super) fn others(&self) -> String {
        if self.misses.is_empty() {
            String::new()
        } else {
            format!(" (others: {})", reasons_text(&self.misses))
        }
    }
    /// The neighbour tables during the run, in a few words.
    pub(super) fn tables_text(&self) -> String {
        format!(
            "tables peaked at {} ARP + {} ND entries (machine-wide), {} forced GC runs, {} overflows",
            self.peak_entries.0, self.peak_entries.1, self.forced_gc, self.table_fulls
        )
    }
    /// What gave way in this run, if anything.
    pub(super) fn gave(&self) -> Option<String> {
        if self.lost.unwrap_or(0) > 0 {
            return Some(format!(
                "ring buffer: arp-trace lost {} events",
                self.lost.unwrap_or(0)
            ));
        }
        if self.seen.dropped.unwrap_or(0) > 0 {
            return Some(format!(
                "tcpdump dropped {} packets",
                self.seen.dropped.unwrap_or(0)
            ));
        }
        if self.captured < self.tcpdump {
            return Some(format!(
                "arp-trace captured {} of {} requests",
                self.captured, self.tcpdump
            ));
        }
        if self.attributed < self.captured {
            return Some(format!(
                "arp-trace attributed {} of {} requests",
                self.attributed, self.captured
            ));
        }
        if self.seen_rate() < 0.9 * self.rate as f64 {
            return Some(format!(
                "the kernel sent only {:.0} requests/s ({})",
                self.seen_rate(),
                self.gen.text()
            ));
        }
        None
    }
}

impl GenStats {
    fn text(&self) -> String {
        format!(
            "{} datagrams sent ({:.1} µs of sender CPU each), {} refused, {} times held back{}",
            self.sent,
            self.cpu_secs / self.sent.max(1) as f64 * 1e6,
            self.refused,
            self.held,
            if self.refused > 0 {
                format!(": {}", std::io::Error::from_raw_os_error(self.last_errno))
            } else {
                String::new()
            }
        )
    }
}

/// Samples the tables' entry counts every 50 ms (and a process's anonymous RSS) until stopped.
struct Sampler {
    on: Arc<AtomicBool>,
    thread: thread::JoinHandle<((u64, f64), (u64, u64))>,
}

impl Sampler {
    fn start(pid: Option<libc::pid_t>) -> Sampler {
        let on = Arc::new(AtomicBool::new(true));
        let thread = {
            let on = on.clone();
            thread::spawn(move || {
                let mut peak = (0u64, 0.0f64);
                let mut entries = (0u64, 0u64);
                let t0 = Instant::now();
                while on.load(Ordering::Relaxed) {
                    if let Some(a) = pid.and_then(|p| status_kib(p, "RssAnon")) {
                        if a > peak.0 {
                            peak = (a, t0.elapsed().as_secs_f64());
                        }
                    }
                    let (a, n) = tables();
                    entries = (entries.0.max(a.entries), entries.1.max(n.entries));
                    thread::sleep(Duration::from_millis(50));
                }
                (peak, entries)
            })
        };
        Sampler { on, thread }
    }

    /// (anonymous RSS peak KiB and when, seconds in), (ARP, ND) peak entries.
    fn stop(self) -> ((u64, f64), (u64, u64)) {
        self.on.store(false, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// The generator alone, no tracer: what tcpdump saw at `rate` (the generator's own ceiling).
pub(super) fn generator_alone(
    storm: &Storm,
    rate: u64,
    dur: Duration,
    files: &mut TmpFiles,
) -> Result<(Seen, f64)> {
    let tcpdumps = storm.start_tcpdumps(files)?;
    let gen = storm.generate(rate, dur);
    pause(DRAIN)?;
    let seen = tcpdumps.stop()?;
    let gen = gen?;
    let seen_rate = seen.total() as f64 / gen.secs.max(1e-9);
    eprintln!(
        "xtask bench: generator alone {rate}/s for {:.1} s: tcpdump {} ARP + {} NS = {:.0}/s ({} dropped; {})",
        gen.secs,
        seen.arp,
        seen.ndisc,
        seen_rate,
        opt(seen.dropped.map(|d| d as f64), 0),
        gen.text()
    );
    Ok((seen, seen_rate))
}

/// One storm; with `stats`, also the BPF programs' own run time during it.
pub(super) fn storm_once(
    bin: &Path,
    storm: &Storm,
    rate: u64,
    dur: Duration,
    files: &mut TmpFiles,
    stats: bool,
) -> Result<StormRun> {
    let tcpdumps = storm.start_tcpdumps(files)?;
    let args = [vec!["--json".to_string()], storm.filter_args()].concat();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let tracer = Tracer::start(bin, &args, files, "storm")?;
    pause(Duration::from_millis(300))?;
    // Resident memory over time, to tell a start-up peak from growth under load.
    let pid = tracer.proc.pid();
    let before = tables();
    let sampler = Sampler::start(Some(pid));
    let bpf_stats = if stats {
        Some(BpfStats::enable()?)
    } else {
        None
    };
    // Only what ran during the storm: the counters may be running already (another user of
    // the machine may have statistics on).
    let prog0 = match &bpf_stats {
        Some(g) => g.read(pid)?,
        None => (Vec::new(), 0.0),
    };
    // What start-up (and the pause after it) cost, so the storm's own share can be told apart.
    let (cpu_before_storm, sys_before_storm) = match cpu_secs_so_far(pid) {
        Some((cpu, sys)) => (Some(cpu), Some(sys)),
        None => (None, None),
    };
    let gen = storm.generate(rate, dur);
    let prog = match &bpf_stats {
        Some(g) => {
            let (after, secs) = g.read(pid)?;
            (stat_delta(&prog0.0, &after), secs - prog0.1)
        }
        None => (Vec::new(), 0.0),
    };
    drop(bpf_stats);
    let (peak_anon, peak_entries) = sampler.stop();
    let gen = gen?;
    check_interrupt()?;
    pause(DRAIN)?;
    let after = tables();
    let startup_hwm_kib = tracer.startup_hwm_kib;
    let anon_kib = status_kib(tracer.proc.pid(), "RssAnon");
    let file_kib = status_kib(tracer.proc.pid(), "RssFile");
    // VmHWM, not wait4's ru_maxrss: the latter also counts the pre-exec copy of xtask itself
    // (exec saves the old address space's high-water mark), which holds earlier runs' output.
    let hwm_kib = status_kib(tracer.proc.pid(), "VmHWM");
    let (mut usage, out, err) = tracer.stop()?;
    usage.max_rss_kib = hwm_kib.unwrap_or(0);
    let seen = tcpdumps.stop()?;
    let (captured, attributed, misses) = json_requests(&out, std::process::id());
    let samples = out
        .lines()
        .filter(|l| l.contains("\"op\":\"request\"") && l.contains("\"trigger\":{"))
        .take(1000)
        .map(str::to_string)
        .collect();
    let run = StormRun {
        rate,
        gen,
        tcpdump: seen.total(),
        seen,
        captured,
        attributed,
        misses,
        lost: lost_from_counts(&err),
        usage,
        cpu_before_storm,
        sys_before_storm,
        startup_hwm_kib,
        anon_kib,
        file_kib,
        prog,
        samples,
        peak_entries,
        forced_gc: (after.0.forced_gc_runs + after.1.forced_gc_runs)
            .saturating_sub(before.0.forced_gc_runs + before.1.forced_gc_runs),
        table_fulls: (after.0.table_fulls + after.1.table_fulls)
            .saturating_sub(before.0.table_fulls + before.1.table_fulls),
    };
    eprintln!(
        "xtask bench: storm {rate}/s for {:.1} s: anon RSS peaked at {} KiB {:.1} s in; tcpdump {} ARP + {} NS ({:.0}/s, {} dropped), arp-trace {} captured, {} attributed{}, {} lost; {:.2} CPU s ({} µs per request), {} KiB peak RSS; {}",
        gen.secs,
        peak_anon.0,
        peak_anon.1,
        run.seen.arp,
        run.seen.ndisc,
        run.seen_rate(),
        opt(run.seen.dropped.map(|d| d as f64), 0),
        run.captured,
        run.attributed,
        run.others(),
        opt(run.lost.map(|d| d as f64), 0),
        usage.cpu_secs,
        opt(run.cpu_us_per_req(), 1),
        usage.max_rss_kib,
        run.tables_text()
    );
    Ok(run)
}

/// tcpdump counting the storm's ARP requests and neighbour solicitations on eth3 inside one
/// storm namespace, once it listens; with its pcap file and its stderr (where it reports
/// drops).
fn start_tcpdump(ns: &Netns, files: &mut TmpFiles, i: usize) -> Result<(Proc, PathBuf, PathBuf)> {
    let _ = ns.try_ip(&["neigh", "flush", "dev", "eth3"]);
    let _ = ns.try_ip(&["-6", "neigh", "flush", "dev", "eth3"]);
    let pcap = files.add(&format!("storm{i}.pcap"));
    let tcpdump_err = files.add(&format!("storm{i}.tcpdump.err"));
    let tcpdump = Proc::spawn(
        ns.exec("tcpdump")
            .args(["-i", "eth3", "-n", "-p", "-B", "65536", "-s", "96", "-w"])
            .arg(&pcap)
            // Neighbour solicitations carry no extension header, so the ICMPv6 type is the
            // first byte after the fixed header.
            .args(["(arp and arp[6:2] = 1) or (icmp6 and ip6[40] = 135)"])
            .stdout(Stdio::null())
            .stderr(File::create(&tcpdump_err)?),
        "tcpdump",
    )?;
    let end = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&tcpdump_err)
        .unwrap_or_default()
        .contains("listening on")
    {
        if Instant::now() > end {
            bail!("tcpdump did not start listening");
        }
        pause(Duration::from_millis(20))?;
    }
    Ok((tcpdump, pcap, tcpdump_err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storm_targets_are_test_net_distinct_and_within_the_table_budget() {
        assert_eq!(v4_hosts().len(), 506);
        let all: Vec<IpAddr> = (0..NAMESPACES)
            .flat_map(|i| storm_targets(i, NAMESPACES))
            .collect();
        let v4: Vec<Ipv4Addr> = all
            .iter()
            .filter_map(|a| match a {
                IpAddr::V4(a) => Some(*a),
                _ => None,
            })
            .collect();
        let v6: Vec<Ipv6Addr> = all
            .iter()
            .filter_map(|a| match a {
                IpAddr::V6(a) => Some(*a),
                _ => None,
            })
            .collect();
        // Below the default gc_thresh2 (512) of each global table.
        assert_eq!(v4.len(), PER_TABLE);
        assert_eq!(v6.len(), PER_TABLE);
        assert!(v4.iter().all(|a| {
            let o = a.octets();
            (o[..3] == [198, 51, 100] || o[..3] == [203, 0, 113])
                && o[3] != OWN_V4_HOST
                && o[3] != 0
                && o[3] != 255
        }));
        let distinct4: std::collections::BTreeSet<_> = v4.iter().collect();
        assert_eq!(distinct4.len(), v4.len());
        let distinct6: std::collections::BTreeSet<_> = v6.iter().collect();
        assert_eq!(distinct6.len(), v6.len());
        for i in 0..NAMESPACES {
            let t = storm_targets(i, NAMESPACES);
            // Alternating families, so both tables see the same rate.
            assert!(t.chunks(2).all(|p| p[0].is_ipv4() && p[1].is_ipv6()));
            for a in t.iter().filter_map(|a| match a {
                IpAddr::V6(a) => Some(*a),
                _ => None,
            }) {
                let s = a.segments();
                assert_eq!(s[..4], [0x2001, 0xdb8, 0x14, i as u16]);
                assert_ne!(a, own_v6(i));
                // One solicited-node group per namespace.
                assert_eq!(s[6..], [0, 0x100]);
            }
        }
    }

    #[test]
    fn targets_rest_past_the_timer_floor() {
        // HZ=250: max(1 jiffy, HZ/100 = 2 jiffies) = 8 ms, plus a jiffy.
        assert_eq!(min_rest(4), Duration::from_millis(12));
        // HZ=1000 and HZ=100: the floor is 10 ms either way.
        assert_eq!(min_rest(1), Duration::from_millis(11));
        assert_eq!(min_rest(10), Duration::from_millis(20));
    }

    #[test]
    fn reads_neighbour_table_statistics() {
        let text = "entries  allocs   destroys hash_grows lookups  hits     res_failed rcv_probes_mcast rcv_probes_ucast periodic_gc_runs forced_gc_runs unresolved_discards table_fulls\n\
                    00000007 000076b6 00007194 00000005   00000077 0000003d 0000000f   00000034         00000005         00000c4b         00000009       00000000            00000001\n\
                    00000007 000073d5 000078f0 00000002   00000062 00000034 0000000d   0000002a         00000005         00000000         00000007       00000000            00000000\n";
        let st = parse_table_stat(text).unwrap();
        assert_eq!(st.entries, 7);
        assert_eq!(st.forced_gc_runs, 16);
        assert_eq!(st.table_fulls, 1);
        assert!(parse_table_stat("").is_none());
    }
}
