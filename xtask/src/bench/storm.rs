//! Figures 2 and 3: an ARP storm in a namespace with a silent peer, counted by tcpdump and by
//! the tracer, with the tracer's CPU and memory; also the rate at which something gives way.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::stats::{
    json_requests, lost_from_counts, opt, pcap_arp_requests, reasons_text, tcpdump_dropped,
};
use super::system::{
    check_interrupt, netns, pause, status_kib, Netns, NetnsExt, Proc, TmpFiles, Tracer, Usage,
    INTERRUPTED,
};
use super::tcp::{BpfStats, ProgStat};

/// Storm targets: every host address of 198.51.100.0/24 and 203.0.113.0/24 except the
/// namespace's own .10: 506 on-link addresses nobody answers.
pub(super) fn storm_targets() -> Vec<Ipv4Addr> {
    let mut v = Vec::new();
    for net in [[198, 51, 100], [203, 0, 113]] {
        for h in 1..=254u8 {
            if h != 10 {
                v.push(Ipv4Addr::new(net[0], net[1], net[2], h));
            }
        }
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
}

/// Sends UDP datagrams round-robin over `targets` at `rate` per second for `dur`.
pub(super) fn generate(targets: Vec<Ipv4Addr>, rate: u64, dur: Duration) -> Result<GenStats> {
    let sock = UdpSocket::bind("0.0.0.0:0")?;
    sock.set_nonblocking(true)?;
    // Datagrams wait on their neighbour entry until it fails (10 ms) and count against the
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
    let start = Instant::now();
    let mut g = GenStats::default();
    let mut i = 0usize;
    loop {
        let el = start.elapsed();
        if el >= dur || INTERRUPTED.load(Ordering::Relaxed) {
            g.secs = el.as_secs_f64();
            return Ok(g);
        }
        let due = (rate as f64 * el.as_secs_f64()) as u64;
        while g.sent + g.refused < due {
            let dst = SocketAddrV4::new(targets[i % targets.len()], 9);
            i += 1;
            match sock.send_to(b"arp-trace-bench", dst) {
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

#[derive(Debug, Clone)]
pub(super) struct StormRun {
    rate: u64,
    gen: GenStats,
    pub(super) tcpdump: u64,
    tcpdump_dropped: Option<u64>,
    pub(super) captured: u64,
    pub(super) attributed: u64,
    /// Why requests were not attributed, with counts.
    pub(super) misses: BTreeMap<String, u64>,
    pub(super) lost: Option<u64>,
    pub(super) usage: Usage,
    /// Start-up peak, and anonymous and file-backed (binary, ring buffer mapping) resident
    /// memory at the end of the storm, KiB.
    pub(super) startup_hwm_kib: Option<u64>,
    pub(super) anon_kib: Option<u64>,
    pub(super) file_kib: Option<u64>,
    /// BPF program statistics and the seconds they cover (only when asked for).
    pub(super) prog: (Vec<ProgStat>, f64),
    /// Up to 1,000 captured request lines, to build the replay trace from.
    pub(super) samples: Vec<String>,
}

impl StormRun {
    pub(super) fn ratio(&self) -> Option<f64> {
        (self.tcpdump > 0).then(|| self.attributed as f64 / self.tcpdump as f64)
    }
    pub(super) fn seen_rate(&self) -> f64 {
        self.tcpdump as f64 / self.gen.secs.max(1e-9)
    }
    /// ` (others: ...)` naming the unattributed requests, or nothing.
    pub(super) fn others(&self) -> String {
        if self.misses.is_empty() {
            String::new()
        } else {
            format!(" (others: {})", reasons_text(&self.misses))
        }
    }
    /// What gave way in this run, if anything.
    pub(super) fn gave(&self) -> Option<String> {
        if self.lost.unwrap_or(0) > 0 {
            return Some(format!(
                "ring buffer: arp-trace lost {} events",
                self.lost.unwrap_or(0)
            ));
        }
        if self.tcpdump_dropped.unwrap_or(0) > 0 {
            return Some(format!(
                "tcpdump dropped {} packets",
                self.tcpdump_dropped.unwrap_or(0)
            ));
        }
        if self.captured < self.tcpdump {
            return Some(format!(
                "arp-trace captured {} of {} requests",
                self.captured, self.tcpdump
            ));
        }
        if self.seen_rate() < 0.9 * self.rate as f64 {
            return Some(format!(
                "the kernel sent only {:.0} requests/s ({} datagrams sent, {} refused{})",
                self.seen_rate(),
                self.gen.sent,
                self.gen.refused,
                if self.gen.refused > 0 {
                    format!(
                        ": {}",
                        std::io::Error::from_raw_os_error(self.gen.last_errno)
                    )
                } else {
                    String::new()
                }
            ));
        }
        None
    }
}

/// The storm namespace: eth3 (198.51.100.10/24, 203.0.113.10/24) and its silent peer eth4.
pub(super) fn storm_netns() -> Result<Netns> {
    let ns = netns("st")?;
    ns.try_ip(&[
        "link", "add", "eth3", "type", "veth", "peer", "name", "eth4",
    ])?;
    ns.try_ip(&["addr", "add", "198.51.100.10/24", "dev", "eth3"])?;
    ns.try_ip(&["addr", "add", "203.0.113.10/24", "dev", "eth3"])?;
    // One request per resolution, failing after the kernel's floor of 10 ms, so a target can
    // be solicited again 10 ms later: a FAILED entry goes back to INCOMPLETE and the kernel
    // sends a new request at once. These are eth3's own neighbour parameters, inside this
    // namespace; the global gc_thresh* limits are left alone (see BENCHMARKS.md).
    ns.try_sysctl("net/ipv4/neigh/eth3/mcast_solicit", "1")?;
    ns.try_sysctl("net/ipv4/neigh/eth3/app_solicit", "0")?;
    ns.try_sysctl("net/ipv4/neigh/eth3/retrans_time_ms", "10")?;
    ns.try_ip(&["link", "set", "eth3", "up"])?;
    ns.try_ip(&["link", "set", "eth4", "up"])?;
    ns.wait_up("eth3")?;
    Ok(ns)
}

/// One storm; with `stats`, also the BPF programs' own run time during it.
pub(super) fn storm_once(
    bin: &Path,
    ns: &Netns,
    rate: u64,
    dur: Duration,
    files: &mut TmpFiles,
    stats: bool,
) -> Result<StormRun> {
    let (mut tcpdump, pcap, tcpdump_err) = start_tcpdump(ns, files)?;
    let tracer = Tracer::start(
        bin,
        &["--json", "--netns", ns.name(), "-i", "eth3"],
        files,
        "storm",
    )?;
    pause(Duration::from_millis(300))?;
    let targets = storm_targets();
    // Resident memory over time, to tell a start-up peak from growth under load.
    let pid = tracer.proc.pid();
    let sampling = std::sync::Arc::new(AtomicBool::new(true));
    let sampler = {
        let on = sampling.clone();
        thread::spawn(move || {
            let mut peak = (0u64, 0.0f64);
            let t0 = Instant::now();
            while on.load(Ordering::Relaxed) {
                let a = status_kib(pid, "RssAnon").unwrap_or(0);
                if a > peak.0 {
                    peak = (a, t0.elapsed().as_secs_f64());
                }
                thread::sleep(Duration::from_millis(50));
            }
            peak
        })
    };
    let bpf_stats = if stats {
        Some(BpfStats::enable()?)
    } else {
        None
    };
    let gen = ns.try_run_in(move || generate(targets, rate, dur));
    let prog = match &bpf_stats {
        Some(g) => g.read(pid)?,
        None => (Vec::new(), 0.0),
    };
    drop(bpf_stats);
    sampling.store(false, Ordering::Relaxed);
    let peak_anon = sampler.join().unwrap_or_default();
    let gen = gen?;
    check_interrupt()?;
    // The last requests are in flight for at most a few ms; let both readers drain.
    pause(Duration::from_millis(500))?;
    let startup_hwm_kib = tracer.startup_hwm_kib;
    let anon_kib = status_kib(tracer.proc.pid(), "RssAnon");
    let file_kib = status_kib(tracer.proc.pid(), "RssFile");
    // VmHWM, not wait4's ru_maxrss: the latter also counts the pre-exec copy of xtask itself
    // (exec saves the old address space's high-water mark), which holds earlier runs' output.
    let hwm_kib = status_kib(tracer.proc.pid(), "VmHWM");
    let (mut usage, out, err) = tracer.stop()?;
    usage.max_rss_kib = hwm_kib.unwrap_or(0);
    tcpdump.stop()?;
    let terr = std::fs::read_to_string(&tcpdump_err).unwrap_or_default();
    let tcpdump_n = pcap_arp_requests(&std::fs::read(&pcap)?)?;
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
        tcpdump: tcpdump_n,
        tcpdump_dropped: tcpdump_dropped(&terr),
        captured,
        attributed,
        misses,
        lost: lost_from_counts(&err),
        usage,
        startup_hwm_kib,
        anon_kib,
        file_kib,
        prog,
        samples,
    };
    eprintln!(
        "xtask bench: storm {rate}/s for {:.1} s: anon RSS peaked at {} KiB {:.1} s in; tcpdump {} ({:.0}/s, {} dropped), arp-trace {} captured, {} attributed{}, {} lost; {:.2} CPU s, {} KiB peak RSS",
        gen.secs,
        peak_anon.0,
        peak_anon.1,
        run.tcpdump,
        run.seen_rate(),
        opt(run.tcpdump_dropped.map(|d| d as f64), 0),
        run.captured,
        run.attributed,
        run.others(),
        opt(run.lost.map(|d| d as f64), 0),
        usage.cpu_secs,
        usage.max_rss_kib
    );
    Ok(run)
}

/// tcpdump counting the storm's requests on eth3 inside the namespace, once it listens; with
/// its pcap file and its stderr (where it reports drops).
pub(super) fn start_tcpdump(ns: &Netns, files: &mut TmpFiles) -> Result<(Proc, PathBuf, PathBuf)> {
    let _ = ns.try_ip(&["neigh", "flush", "dev", "eth3"]);
    let pcap = files.add("storm.pcap");
    let tcpdump_err = files.add("storm.tcpdump.err");
    let tcpdump = Proc::spawn(
        ns.exec("tcpdump")
            .args(["-i", "eth3", "-n", "-p", "-B", "65536", "-s", "96", "-w"])
            .arg(&pcap)
            .args(["arp and arp[6:2] = 1"])
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
    fn storm_targets_are_test_net_and_exclude_own_address() {
        let t = storm_targets();
        assert_eq!(t.len(), 506);
        assert!(t.iter().all(|a| {
            let o = a.octets();
            (o[..3] == [198, 51, 100] || o[..3] == [203, 0, 113]) && o[3] != 10 && o[3] != 0
        }));
    }
}
