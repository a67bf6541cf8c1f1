//! Figure 1d: what the transmit hook costs per frame, from the kernel's own accounting
//! (`run_time_ns ÷ run_cnt` of `net_dev_queue`), on IPv4 TCP and on IPv6 TCP: every frame
//! of both passes the hook, and only ARP and neighbour discovery may cost more than the
//! protocol check. With `--baseline BIN` the same is measured for that binary, alternating
//! with this one in the same run, so a change to the hot path is a difference of two
//! figures taken side by side.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::stats::{list, median, Row, Verdict};
use super::system::{
    check_interrupt, netns, output, pause, Netns, NetnsExt, Proc, TmpFiles, Tracer,
};
use super::tcp::BpfStats;

const V4_SERVER: &str = "192.0.2.2";
const V6_SERVER: &str = "2001:db8::2";
const PROGRAM: &str = "net_dev_queue";
/// The most the hook may add per frame before a change counts as measurable, ns.
const ALLOWED_NS: f64 = 10.0;

/// ns per `net_dev_queue` run on IPv4 and on IPv6 TCP, per round.
#[derive(Default)]
pub(super) struct Cost {
    pub(super) v4: Vec<f64>,
    pub(super) v6: Vec<f64>,
}

pub(super) struct HotPath {
    pub(super) this: Cost,
    pub(super) baseline: Option<Cost>,
    pub(super) secs: u32,
}

/// The `net_dev_queue` counters of a running tracer: (runs, ns).
fn counters(stats: &BpfStats, pid: i32) -> Result<(u64, u64)> {
    let (progs, _) = stats.read(pid)?;
    let p = progs
        .iter()
        .find(|p| p.name == PROGRAM)
        .with_context(|| format!("no {PROGRAM} program among {progs:?}"))?;
    Ok((p.run_cnt, p.run_time_ns))
}

fn per_run(before: (u64, u64), after: (u64, u64)) -> Result<f64> {
    let runs = after.0.saturating_sub(before.0);
    if runs == 0 {
        bail!("{PROGRAM} did not run");
    }
    Ok(after.1.saturating_sub(before.1) as f64 / runs as f64)
}

fn iperf(client: &Netns, server: &str, secs: u32) -> Result<()> {
    output(
        client
            .exec("iperf3")
            .args(["-c", server, "-t", &secs.to_string()]),
    )?;
    Ok(())
}

/// One round for one binary: IPv4 TCP, then IPv6 TCP, under one tracer.
fn round(
    bin: &Path,
    client: &Netns,
    secs: u32,
    files: &mut TmpFiles,
    into: &mut Cost,
) -> Result<()> {
    let t = Tracer::start(bin, &["-q"], files, "hotpath")?;
    pause(Duration::from_millis(300))?;
    let measured = (|| -> Result<(f64, f64)> {
        let stats = BpfStats::enable()?;
        let pid = t.proc.pid();
        let start = counters(&stats, pid)?;
        iperf(client, V4_SERVER, secs)?;
        let mid = counters(&stats, pid)?;
        iperf(client, V6_SERVER, secs)?;
        let end = counters(&stats, pid)?;
        Ok((per_run(start, mid)?, per_run(mid, end)?))
    })();
    t.stop()?;
    let (v4, v6) = measured?;
    into.v4.push(v4);
    into.v6.push(v6);
    Ok(())
}

pub(super) fn bench_hot_path(
    bin: &Path,
    baseline: Option<&Path>,
    quick: bool,
    files: &mut TmpFiles,
) -> Result<HotPath> {
    let (rounds, secs) = if quick { (1, 1) } else { (5, 2) };
    let a = netns("ha")?;
    let b = netns("hb")?;
    for ns in [&a, &b] {
        // IPv6 back on, without link-local addresses: no DAD or router solicitations of
        // their own, and a solicitation for the peer still leaves from the global address.
        for (k, v) in [
            ("net/ipv6/conf/default/addr_gen_mode", "1"),
            ("net/ipv6/conf/default/accept_dad", "0"),
            ("net/ipv6/conf/all/disable_ipv6", "0"),
            ("net/ipv6/conf/default/disable_ipv6", "0"),
        ] {
            ns.try_sysctl(k, v)?;
        }
    }
    a.try_ip(&[
        "link",
        "add",
        "eth0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        b.name(),
    ])?;
    for (ns, v4, v6) in [
        (&a, "192.0.2.1/24", "2001:db8::1/64"),
        (&b, "192.0.2.2/24", "2001:db8::2/64"),
    ] {
        ns.try_ip(&["addr", "add", v4, "dev", "eth0"])?;
        ns.try_ip(&["-6", "addr", "add", v6, "dev", "eth0", "nodad"])?;
        ns.try_ip(&["link", "set", "eth0", "up"])?;
    }
    // A veth has carrier only once both ends are up.
    a.wait_up("eth0")?;
    b.wait_up("eth0")?;
    let _server = Proc::spawn(
        b.exec("iperf3")
            .args(["-s"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
        "iperf3 server",
    )?;
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while iperf(&a, V4_SERVER, 1).is_err() || iperf(&a, V6_SERVER, 1).is_err() {
        if std::time::Instant::now() > end {
            bail!(
                "iperf3 server in {} did not answer on both families",
                b.name()
            );
        }
        pause(Duration::from_millis(200))?;
    }
    let mut this = Cost::default();
    let mut base = baseline.map(|_| Cost::default());
    for i in 0..rounds {
        check_interrupt()?;
        // This, baseline; then baseline, this: drift of the machine favours neither.
        let order = if i % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for mine in order {
            match (mine, baseline, base.as_mut()) {
                (true, _, _) => round(bin, &a, secs, files, &mut this)?,
                (false, Some(b), Some(c)) => round(b, &a, secs, files, c)?,
                _ => {}
            }
        }
        eprintln!(
            "xtask bench: hot path round {}/{rounds}: IPv4 {:.0} ns, IPv6 {:.0} ns per frame",
            i + 1,
            this.v4[i],
            this.v6[i]
        );
    }
    Ok(HotPath {
        this,
        baseline: base,
        secs,
    })
}

/// Row 1d.
pub(super) fn hot_path_row(h: &HotPath) -> Row {
    let m = |v: &[f64]| median(v).unwrap_or(f64::NAN);
    let (v4, v6) = (m(&h.this.v4), m(&h.this.v6));
    let rounds = h.this.v4.len();
    let mut figure = format!(
        "{PROGRAM} cost per frame (BPF run time ÷ runs, `kernel.bpf_stats_enabled=1` for these \
         runs only) on IPv4 TCP and on IPv6 TCP over veth, {rounds} rounds of {s} s each; this \
         build per round: IPv4 {} ns, IPv6 {} ns",
        list(&h.this.v4, 0),
        list(&h.this.v6, 0),
        s = h.secs
    );
    let Some(b) = &h.baseline else {
        return Row {
            id: "1d".into(),
            figure,
            measured: format!("IPv4 {v4:.0} ns, IPv6 {v6:.0} ns"),
            target: format!("≤ baseline + {ALLOWED_NS:.0} ns (run with --baseline)"),
            verdict: Verdict::Report,
        };
    };
    let (b4, b6) = (m(&b.v4), m(&b.v6));
    figure.push_str(&format!(
        "; baseline (--baseline) per round: IPv4 {} ns, IPv6 {} ns, alternating with this build",
        list(&b.v4, 0),
        list(&b.v6, 0)
    ));
    let worst = (v4 - b4).max(v6 - b6);
    Row {
        id: "1d".into(),
        figure,
        measured: format!(
            "IPv4 {v4:.0} ns (baseline {b4:.0}), IPv6 {v6:.0} ns (baseline {b6:.0}): {:+.0} and {:+.0} ns",
            v4 - b4,
            v6 - b6
        ),
        target: format!("≤ baseline + {ALLOWED_NS:.0} ns, both families"),
        verdict: Verdict::at_most((!worst.is_nan()).then_some(worst), ALLOWED_NS),
    }
}
