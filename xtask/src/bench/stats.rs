//! The pure parts: statistics (medians, pair ratios, noise), the results table, and parsers
//! of what the tools print (pcap, arp-trace's JSON and counts, tcpdump, iperf3).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{bail, Result};

/// The median (mean of the middle two for an even count); `None` when empty or any is NaN.
pub fn median(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() || xs.iter().any(|x| x.is_nan()) {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Ratio of each pair `num[i] / den[i]`, over the pairs both sides have; pairs with a zero
/// denominator are left out (a failed sample must not become infinity).
pub fn pair_ratios(num: &[f64], den: &[f64]) -> Vec<f64> {
    num.iter()
        .zip(den)
        .filter(|(_, d)| **d != 0.0)
        .map(|(n, d)| n / d)
        .collect()
}

/// How a figure compares with its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Met,
    Missed,
    /// No target, or not measured.
    Report,
    /// The samples disagree too much to say.
    Inconclusive,
    /// Under the target only because the tracer lost events (did less work than asked).
    Incomplete,
}

impl Verdict {
    pub(super) fn at_least(v: Option<f64>, target: f64) -> Verdict {
        match v {
            Some(v) if v >= target => Verdict::Met,
            Some(_) => Verdict::Missed,
            None => Verdict::Report,
        }
    }
    pub(super) fn at_most(v: Option<f64>, target: f64) -> Verdict {
        match v {
            Some(v) if v <= target => Verdict::Met,
            Some(_) => Verdict::Missed,
            None => Verdict::Report,
        }
    }
    fn text(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "**missed**",
            Verdict::Report => "-",
            Verdict::Inconclusive => "inconclusive (noise)",
            Verdict::Incomplete => "inconclusive (events lost)",
        }
    }
}

/// Samples whose spread (max − min) exceeds `rel` of their median cannot support a
/// verdict against a target a few percent away.
pub fn too_noisy(xs: &[f64], rel: f64) -> bool {
    let (Some(m), Some(lo), Some(hi)) = (
        median(xs),
        xs.iter().cloned().reduce(f64::min),
        xs.iter().cloned().reduce(f64::max),
    ) else {
        return false;
    };
    (hi - lo) > rel * m
}

/// One line of the results table.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: String,
    pub figure: String,
    pub measured: String,
    pub target: String,
    pub verdict: Verdict,
}

/// A Markdown table; `|` inside a cell is escaped so a figure cannot break the layout.
pub fn render_table(rows: &[Row]) -> String {
    let cell = |s: &str| s.replace('|', "\\|");
    let mut out = String::from("| # | figure | measured | target | |\n|---|---|---|---|---|\n");
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            cell(&r.id),
            cell(&r.figure),
            cell(&r.measured),
            cell(&r.target),
            r.verdict.text()
        );
    }
    out
}

/// Formats a list of per-sample figures compactly: `0.991 0.987 1.002`.
pub fn list(xs: &[f64], decimals: usize) -> String {
    xs.iter()
        .map(|x| format!("{x:.decimals$}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// An integer with thousands separators, as the rows write rates: `20,000`.
pub fn grouped(n: u64) -> String {
    let d = n.to_string();
    let mut out = String::new();
    for (i, c) in d.chars().enumerate() {
        if i > 0 && (d.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub(super) fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map(|v| format!("{v:.decimals$}"))
        .unwrap_or_else(|| "n/a".into())
}

/// Solicitations in a capture: ARP requests and IPv6 neighbour solicitations.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Solicitations {
    pub arp: u64,
    pub ndisc: u64,
}

/// Counts ARP requests (Ethernet, ethertype 0x0806, opcode 1) and IPv6 neighbour
/// solicitations (ethertype 0x86dd, next header ICMPv6 right after the fixed header, type
/// 135) in a pcap file (classic format, either byte order, µs or ns timestamps).
pub fn pcap_solicitations(bytes: &[u8]) -> Result<Solicitations> {
    if bytes.len() < 24 {
        bail!("pcap file too short ({} bytes)", bytes.len());
    }
    let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
    let le = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => bail!("not a pcap file (magic {magic:02x?}; pcapng is not read here)"),
    };
    let u32_at = |b: &[u8], i: usize| {
        let a = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let linktype = u32_at(bytes, 20);
    if linktype != 1 {
        bail!("pcap link type {linktype}, expected Ethernet (1)");
    }
    let mut i = 24;
    let mut n = Solicitations::default();
    while i + 16 <= bytes.len() {
        let incl = u32_at(bytes, i + 8) as usize;
        let start = i + 16;
        let end = start + incl;
        if end > bytes.len() {
            break; // a record cut short by the capture being stopped
        }
        let f = &bytes[start..end];
        if f.len() >= 22 && f[12..14] == [0x08, 0x06] && f[20..22] == [0x00, 0x01] {
            n.arp += 1;
        } else if f.len() >= 55 && f[12..14] == [0x86, 0xdd] && f[20] == 58 && f[54] == 135 {
            n.ndisc += 1;
        }
        i = end;
    }
    Ok(n)
}

/// ARP requests and neighbour solicitations in arp-trace's JSON output, how many of them
/// name the packet and the process (`trigger.pid == pid`) behind them, and what the others
/// said instead (counted by `unattributed_reason`).
pub fn json_requests(text: &str, pid: u32) -> (u64, u64, BTreeMap<String, u64>) {
    let pid_field = format!("\"pid\":{pid}");
    let mut req = 0;
    let mut attributed = 0;
    let mut misses = BTreeMap::new();
    for l in text.lines() {
        let arp = l.contains("\"type\":\"arp\"") && l.contains("\"op\":\"request\"");
        let ndisc = l.contains("\"type\":\"ndisc\"") && l.contains("\"op\":\"solicit\"");
        if arp || ndisc {
            req += 1;
            let own = l
                .match_indices(&pid_field)
                .any(|(i, m)| !l[i + m.len()..].starts_with(|c: char| c.is_ascii_digit()));
            if l.contains("\"trigger\":{") && own {
                attributed += 1;
            } else {
                *misses.entry(unattributed_reason(l)).or_default() += 1;
            }
        }
    }
    (req, attributed, misses)
}

/// What a request line that names no process of ours says instead, in a few words: its
/// trigger's origin and pid, or the neighbour state when it has no trigger.
pub fn unattributed_reason(line: &str) -> String {
    let field = |key: &str, from: usize| -> String {
        let pat = format!("\"{key}\":");
        line[from..]
            .find(&pat)
            .map(|i| {
                let v = &line[from + i + pat.len()..];
                let end = v.find([',', '}']).unwrap_or(v.len());
                v[..end].trim_matches('"').to_string()
            })
            .unwrap_or_else(|| "absent".into())
    };
    match line.find("\"trigger\":{") {
        None => format!("no trigger, neigh_state {}", field("neigh_state", 0)),
        Some(t) => format!(
            "trigger origin {}, pid {}",
            field("origin", t),
            field("pid", t)
        ),
    }
}

/// `: 3 × reason; 1 × other` over several runs, or nothing when every request was attributed.
pub fn reasons_suffix<'a>(runs: impl IntoIterator<Item = &'a BTreeMap<String, u64>>) -> String {
    let mut all = BTreeMap::new();
    for m in runs {
        for (k, n) in m {
            *all.entry(k.clone()).or_insert(0) += n;
        }
    }
    if all.is_empty() {
        String::new()
    } else {
        format!(": {}", reasons_text(&all))
    }
}

/// `3 × reason; 1 × other` for a row or a log line.
pub fn reasons_text(misses: &BTreeMap<String, u64>) -> String {
    misses
        .iter()
        .map(|(r, n)| format!("{n} × {r}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `L lost` from arp-trace's counts line on stderr.
pub fn lost_from_counts(stderr: &str) -> Option<u64> {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.contains("captured;") && l.contains(" lost"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let i = words.iter().position(|w| *w == "lost")?;
    words.get(i.checked_sub(1)?)?.parse().ok()
}

/// `N packets dropped by kernel` from tcpdump's stderr.
pub fn tcpdump_dropped(stderr: &str) -> Option<u64> {
    let l = stderr.lines().find(|l| l.contains("dropped by kernel"))?;
    l.split_whitespace().next()?.parse().ok()
}

/// iperf3 `-J`: `end.sum_received.bits_per_second`, found without a JSON parser (xtask keeps
/// its dependencies small): the first `bits_per_second` after the last `"sum_received"`.
pub fn iperf_received_bps(json: &str) -> Option<f64> {
    let s = json.rfind("\"sum_received\"")?;
    let rest = &json[s..];
    let k = rest.find("\"bits_per_second\"")?;
    let rest = rest[k + "\"bits_per_second\"".len()..].trim_start();
    let rest = rest.strip_prefix(':')?.trim_start();
    let num: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        .collect();
    num.parse().ok()
}

/// An interval line of `iperf3 -f m` text output: its rate in Mbit/s. The closing summary
/// lines (`sender`, `receiver`) are not intervals.
pub fn iperf_interval_mbps(line: &str) -> Option<f64> {
    if line.contains("sender") || line.contains("receiver") {
        return None;
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    let i = words.iter().position(|w| *w == "Mbits/sec")?;
    words.get(i.checked_sub(1)?)?.parse().ok()
}

/// Mean rate of the samples whose whole interval (`interval` seconds ending when the line
/// arrived at `t`) lies inside `[t0, t1]`; `None` when no sample does.
pub fn window_mean(samples: &[(f64, f64)], interval: f64, t0: f64, t1: f64) -> Option<f64> {
    let inside: Vec<f64> = samples
        .iter()
        .filter(|(t, _)| t - interval >= t0 && *t <= t1)
        .map(|(_, v)| *v)
        .collect();
    (!inside.is_empty()).then(|| inside.iter().sum::<f64>() / inside.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_iperf3_interval_lines_and_windows() {
        let l = "[  5]   1.00-1.25   sec   665 MBytes  22322 Mbits/sec    0   3.12 MBytes";
        assert_eq!(iperf_interval_mbps(l), Some(22322.0));
        let sum = "[  5]   0.00-10.00  sec  26.1 GBytes  22401 Mbits/sec    0             sender";
        assert_eq!(iperf_interval_mbps(sum), None);
        assert_eq!(
            iperf_interval_mbps("Connecting to host 192.0.2.2, port 5201"),
            None
        );
        let samples = [(1.0, 10.0), (1.25, 20.0), (1.5, 30.0), (1.75, 40.0)];
        // Only intervals wholly inside the window count: (1.0, 1.25] and (1.25, 1.5].
        assert_eq!(window_mean(&samples, 0.25, 1.0, 1.5), Some(25.0));
        assert_eq!(window_mean(&samples, 0.25, 1.6, 1.7), None);
    }

    #[test]
    fn groups_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(20_000), "20,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }

    #[test]
    fn median_odd_even_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn pair_ratios_pairwise_and_skip_zero() {
        assert_eq!(
            pair_ratios(&[2.0, 3.0, 5.0], &[1.0, 0.0, 10.0]),
            vec![2.0, 0.5]
        );
        assert_eq!(pair_ratios(&[1.0, 2.0], &[1.0]), vec![1.0]);
    }

    #[test]
    fn table_renders_and_escapes() {
        let t = render_table(&[Row {
            id: "1".into(),
            figure: "a|b".into(),
            measured: "0.99".into(),
            target: "≥ 0.98".into(),
            verdict: Verdict::Met,
        }]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2], "| 1 | a\\|b | 0.99 | ≥ 0.98 | met |");
        assert_eq!(Verdict::at_least(Some(0.97), 0.98), Verdict::Missed);
        assert_eq!(Verdict::at_most(Some(0.4), 0.5), Verdict::Met);
        assert_eq!(Verdict::at_most(None, 0.5), Verdict::Report);
        assert!(too_noisy(&[0.7, 1.0, 1.6], 0.2));
        assert!(!too_noisy(&[0.97, 0.99, 1.01], 0.2));
        assert!(!too_noisy(&[], 0.2));
    }

    fn pcap(frames: &[&[u8]]) -> Vec<u8> {
        let mut b = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        b.extend([0u8; 8]);
        b.extend(65535u32.to_le_bytes());
        b.extend(1u32.to_le_bytes());
        for f in frames {
            b.extend([0u8; 8]);
            b.extend((f.len() as u32).to_le_bytes());
            b.extend((f.len() as u32).to_le_bytes());
            b.extend_from_slice(f);
        }
        b
    }

    #[test]
    fn pcap_counts_arp_requests_only() {
        let mut req = [0u8; 42];
        req[12] = 0x08;
        req[13] = 0x06;
        req[21] = 1;
        let mut reply = req;
        reply[21] = 2;
        let mut ip = req;
        ip[13] = 0x00;
        let mut b = pcap(&[&req, &reply, &ip, &req]);
        assert_eq!(pcap_solicitations(&b).unwrap().arp, 2);
        b.truncate(b.len() - 5); // capture stopped mid-record
        assert_eq!(pcap_solicitations(&b).unwrap().arp, 1);
        assert!(pcap_solicitations(b"nope").is_err());
    }

    /// An Ethernet frame carrying IPv6 with `next` as next header and `icmp_type` as the first
    /// byte after the fixed header.
    fn ipv6_frame(next: u8, icmp_type: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 40 + 24];
        f[12] = 0x86;
        f[13] = 0xdd;
        f[14] = 0x60;
        f[20] = next;
        f[21] = 255;
        f[54] = icmp_type;
        f
    }

    #[test]
    fn pcap_counts_neighbour_solicitations_apart_from_arp() {
        let mut req = [0u8; 42];
        req[12] = 0x08;
        req[13] = 0x06;
        req[21] = 1;
        let ns = ipv6_frame(58, 135);
        let na = ipv6_frame(58, 136);
        // Hop-by-hop options first (an MLD report): not a solicitation even if a later byte
        // happened to be 135.
        let mld = ipv6_frame(0, 135);
        let udp = ipv6_frame(17, 135);
        let short = &ns[..54];
        let b = pcap(&[&req, &ns, &na, &mld, &udp, short, &ns]);
        assert_eq!(
            pcap_solicitations(&b).unwrap(),
            Solicitations { arp: 1, ndisc: 2 }
        );
        assert_eq!(pcap_solicitations(&b).unwrap().arp, 1);
        // Big-endian header, nanosecond magic.
        let mut be = vec![0xa1, 0xb2, 0x3c, 0x4d, 0, 2, 0, 4];
        be.extend([0u8; 8]);
        be.extend(65535u32.to_be_bytes());
        be.extend(1u32.to_be_bytes());
        be.extend([0u8; 8]);
        be.extend((ns.len() as u32).to_be_bytes());
        be.extend((ns.len() as u32).to_be_bytes());
        be.extend_from_slice(&ns);
        assert_eq!(
            pcap_solicitations(&be).unwrap(),
            Solicitations { arp: 0, ndisc: 1 }
        );
    }

    #[test]
    fn json_requests_counts_attribution_by_pid() {
        let text = r#"{"type":"arp","op":"request","trigger":{"pid":42,"comm":"x"}}
{"type":"arp","op":"request","trigger":null}
{"type":"arp","op":"request","trigger":{"pid":421}}
{"type":"arp","op":"reply"}
{"type":"neigh_failed","op":"request"}
{"type":"ndisc","op":"solicit","trigger":{"pid":42}}
{"type":"ndisc","op":"advert","trigger":{"pid":42}}"#;
        let (req, own, misses) = json_requests(text, 42);
        assert_eq!((req, own), (4, 2));
        assert_eq!(
            reasons_text(&misses),
            "1 × no trigger, neigh_state absent; 1 × trigger origin absent, pid 421"
        );
        let l = r#"{"type":"arp","op":"request","trigger":{"src":"192.0.2.1","origin":"local","pid":null,"comm":null},"neigh_state":"incomplete"}"#;
        assert_eq!(unattributed_reason(l), "trigger origin local, pid null");
        let l = r#"{"type":"arp","op":"request","trigger":null,"neigh_state":null}"#;
        assert_eq!(unattributed_reason(l), "no trigger, neigh_state null");
        let empty = BTreeMap::new();
        assert_eq!(reasons_suffix([&empty, &empty]), "");
        assert_eq!(
            reasons_suffix([&misses, &misses]),
            ": 2 × no trigger, neigh_state absent; 2 × trigger origin absent, pid 421"
        );
    }

    #[test]
    fn parses_tool_output() {
        let err = "arp-trace: tracing\narp-trace: 5 ARP requests, 0 replies captured; 7 lost (ring buffer full)\n";
        assert_eq!(lost_from_counts(err), Some(7));
        assert_eq!(lost_from_counts("nothing"), None);
        assert_eq!(
            tcpdump_dropped(
                "10 packets captured\n12 packets received by filter\n3 packets dropped by kernel\n"
            ),
            Some(3)
        );
        let j = r#"{"intervals":[{"sum":{"bits_per_second":1}}],"end":{"streams":[{"receiver":{"end":1.1}}],"sum_sent":{"end":1,"bits_per_second":9.5e9},"sum_received":{"end":1,"bytes":1,"bits_per_second":	9123456789.5}}}"#;
        assert_eq!(iperf_received_bps(j), Some(9123456789.5));
    }
}
