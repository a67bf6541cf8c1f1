//! Loads the eBPF programs into the running kernel: resolves struct offsets from its BTF,
//! hands them over as globals, attaches the hooks this kernel allows, and turns the kernel's
//! refusals into one-line causes with a fix.

use std::fmt;

use anyhow::{anyhow, bail, Context, Result};
use arp_trace_common::{Config, Offsets, MAX_RANGES};
use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::programs::BtfTracePoint;
use aya::{Ebpf, EbpfLoader};

use crate::btf::Btf;
use crate::kallsyms::{Kallsyms, NEIGH_PROBE_SITES};

/// The compiled eBPF object, built from `arp-trace-ebpf/` by build.rs.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/arp-trace"));

/// Reads every field the programs need from the running kernel's BTF.
pub fn resolve_offsets(btf: &Btf) -> Result<Offsets> {
    let f = |s: &str, p: &str| btf.field(s, p).map(|f| f.offset);
    let o = Offsets {
        skb_head: f("sk_buff", "head")?,
        skb_len: f("sk_buff", "len")?,
        skb_protocol: f("sk_buff", "protocol")?,
        skb_mac_header: f("sk_buff", "mac_header")?,
        skb_network_header: f("sk_buff", "network_header")?,
        skb_dev: f("sk_buff", "dev")?,
        skb_mark: f("sk_buff", "mark")?,
        skb_iif: f("sk_buff", "skb_iif")?,
        dev_ifindex: f("net_device", "ifindex")?,
        dev_name: f("net_device", "name")?,
        // possible_net_t is empty without CONFIG_NET_NS; then every device is in init_net.
        dev_nd_net: f("net_device", "nd_net.net")?,
        net_ns_inum: f("net", "ns.inum")?,
        skb_sk: f("sk_buff", "sk")?,
        sk_state: f("sock", "__sk_common.skc_state")?,
        sk_socket: f("sock", "sk_socket")?,
        rsk_listener: f("request_sock", "__req_common.skc_listener")?,
        socket_file: f("socket", "file")?,
        // SOCK_INODE(): the inode follows the socket inside struct socket_alloc.
        socket_ino: f("socket_alloc", "vfs_inode")? + f("inode", "i_ino")?,
        neigh_nud_state: f("neighbour", "nud_state")?,
        neigh_probes: f("neighbour", "probes")?,
        neigh_qlen: f("neighbour", "arp_queue.qlen")?,
        neigh_dev: f("neighbour", "dev")?,
        neigh_key: f("neighbour", "primary_key")?,
        neigh_tbl: f("neighbour", "tbl")?,
        tbl_family: f("neigh_table", "family")?,
        neigh_queue: f("neighbour", "arp_queue")?,
        neigh_queue_tail: f("neighbour", "arp_queue.prev")?,
        neigh_parms: f("neighbour", "parms")?,
        parms_ucast_probes: f("neigh_parms", "data")?
            + 4 * btf.enum_value("", "NEIGH_VAR_UCAST_PROBES").unwrap_or(1) as u32,
    };
    Ok(o)
}

/// Kernel text ranges and enum values the programs compare against.
pub fn resolve_config(btf: &Btf, syms: &Kallsyms) -> Result<Config> {
    let mut cfg = Config::UNSET;
    let ranges: Vec<(u64, u64)> = NEIGH_PROBE_SITES
        .iter()
        .flat_map(|n| syms.ranges(n))
        .take(MAX_RANGES)
        .collect();
    if ranges.is_empty() {
        bail!("none of {NEIGH_PROBE_SITES:?} is in /proc/kallsyms; cannot find the solicit path");
    }
    for (i, (lo, hi)) in ranges.iter().enumerate() {
        cfg.ranges[i] = [*lo, *hi];
    }
    let reason = |n: &str| btf.enum_value("skb_drop_reason", n).unwrap_or(0) as u32;
    cfg.drop_neigh_failed = reason("SKB_DROP_REASON_NEIGH_FAILED");
    cfg.drop_neigh_queuefull = reason("SKB_DROP_REASON_NEIGH_QUEUEFULL");
    Ok(cfg)
}

fn leak(s: String) -> &'static str {
    // A handful of hook names per run; they live as long as the process anyway.
    Box::leak(s.into_boxed_str())
}

/// A hook in use, for the start-up line and trace headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub role: &'static str,
    pub name: &'static str,
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.role, self.name)
    }
}

/// Loaded and attached programs. Dropping it detaches everything (no pins are made).
pub struct Tracer {
    pub ebpf: Ebpf,
    pub hooks: Vec<Hook>,
}

pub struct LoadOptions {
    /// Ring buffer size in bytes (power of two, multiple of the page size).
    pub buffer_bytes: u32,
}

/// Fails early with a clear message when the process cannot possibly load BPF programs.
pub fn check_privileges() -> Result<()> {
    // SAFETY: geteuid has no failure mode.
    if unsafe { libc::geteuid() } == 0 {
        return Ok(());
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    const CAP_SYS_ADMIN: u64 = 21;
    const CAP_PERFMON: u64 = 38;
    const CAP_BPF: u64 = 39;
    let has = |c: u64| cap_eff & (1 << c) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    Err(anyhow!(
        "permission denied: tracing needs root or CAP_BPF and CAP_PERFMON; run it with sudo \
         (sudo arp-trace ...)"
    ))
}

/// Turns a load or attach error into a cause the user can act on.
fn explain_bpf_error(
    what: &str,
    err: impl std::error::Error + Send + Sync + 'static,
) -> anyhow::Error {
    let text = format!("{err:#}");
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => {
                    return anyhow!(
                        "{what}: the kernel refused (permission denied): run as root (sudo), \
                         and check that kernel lockdown=confidentiality or a security module \
                         does not forbid BPF"
                    )
                }
                Some(libc::ENOENT) => {
                    return anyhow!("{what}: this kernel does not have that hook ({io})")
                }
                _ => {}
            }
        }
        source = e.source();
    }
    if text.contains("tracefs") {
        return anyhow!(
            "{what}: tracefs is not mounted; mount it with `mount -t tracefs tracefs \
             /sys/kernel/tracing`"
        );
    }
    anyhow!("{what}: {text}")
}

impl Tracer {
    pub fn load(btf: &Btf, syms: &Kallsyms, opts: &LoadOptions) -> Result<Tracer> {
        let offsets = resolve_offsets(btf).context("reading kernel structure layouts from BTF")?;
        let config = resolve_config(btf, syms)?;
        let aya_btf = aya::Btf::from_sys_fs()
            .map_err(|e| anyhow!("cannot read the kernel's BTF (/sys/kernel/btf/vmlinux): {e}"))?;
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&aya_btf))
            .override_global("OFFSETS", &offsets, true)
            .override_global("CONFIG", &config, true)
            .map_max_entries("EVENTS", opts.buffer_bytes)
            .load(EBPF_OBJECT)
            .map_err(|e| explain_bpf_error("loading the eBPF programs", e))?;

        let mut hooks = Vec::new();
        for (role, name) in [
            ("transmit", "net_dev_queue"),
            ("solicit", "consume_skb"),
            ("drops", "kfree_skb"),
            ("neighbour", "neigh_event_send_done"),
            ("neighbour", "neigh_timer_handler"),
        ] {
            let what = format!("tp_btf/{name}");
            let prog: &mut BtfTracePoint = ebpf
                .program_mut(name)
                .with_context(|| format!("eBPF object has no {name} program"))?
                .try_into()?;
            prog.load(name, &aya_btf)
                .map_err(|e| explain_bpf_error(&format!("loading {what}"), e))?;
            prog.attach()
                .map_err(|e| explain_bpf_error(&format!("attaching {what}"), e))?;
            hooks.push(Hook {
                role,
                name: leak(what),
            });
        }

        Ok(Tracer { ebpf, hooks })
    }

    pub fn events(&mut self) -> Result<RingBuf<MapData>> {
        let map = self
            .ebpf
            .take_map("EVENTS")
            .context("eBPF object has no EVENTS map")?;
        Ok(RingBuf::try_from(map)?)
    }

    pub fn lost(&mut self) -> Result<PerCpuArray<MapData, u64>> {
        let map = self
            .ebpf
            .take_map("LOST")
            .context("eBPF object has no LOST map")?;
        Ok(PerCpuArray::try_from(map)?)
    }
}

/// Sum of the per-CPU lost counters.
pub fn read_lost(map: &PerCpuArray<MapData, u64>) -> u64 {
    map.get(&0, 0).map(|v| v.iter().sum()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_resolve_on_the_running_kernel() {
        // Unit test of the BTF walk against the real kernel description; skipped where the
        // machine has no BTF (the loader reports that case with its own message).
        let Ok(btf) = Btf::from_sys_fs() else { return };
        let o = resolve_offsets(&btf).unwrap();
        // Layout facts stable across kernels since 3.x: the header offsets are adjacent u16s
        // and everything the programs read sits in the first cache lines of each struct.
        assert_eq!(o.skb_mac_header, o.skb_network_header + 2, "{o:?}");
        assert_ne!(o.skb_dev, o.skb_head);
        assert!(
            o.skb_head < 256 && o.dev_name < 1024 && o.net_ns_inum < 4096,
            "{o:?}"
        );
    }

    #[test]
    fn permission_errors_name_the_fix() {
        let e = explain_bpf_error("loading", std::io::Error::from_raw_os_error(libc::EPERM));
        assert!(e.to_string().contains("sudo"), "{e}");
        let e = explain_bpf_error("attaching", std::io::Error::other("tracefs not found"));
        assert!(e.to_string().contains("mount -t tracefs"), "{e}");
    }
}
