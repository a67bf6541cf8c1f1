//! Loads the eBPF programs into the running kernel: resolves struct offsets from its BTF,
//! hands them over as globals, attaches the hooks of [`super::hooks::HOOKS`] this kernel
//! allows, and turns the kernel's refusals into one-line causes with a fix.

use anyhow::{anyhow, bail, Context, Result};
use arp_trace_common::{Config, Offsets, SETTING_QUEUE_TRIGGER};
use aya::maps::{Array, MapData, PerCpuArray, RingBuf};
use aya::programs::{BtfTracePoint, FEntry, KProbe};
use aya::{Ebpf, EbpfLoader};

use super::btf::Btf;
use super::hooks::{common_hooks, Features, Hook, HookChoice, InUse, Requires, Role, SolicitPath};
use super::kallsyms::{Kallsyms, NDISC_DROP_SITES};

/// The compiled eBPF object, built from `arp-trace-ebpf/` by build.rs.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/arp-trace"));

/// Reads every field the programs need from the running kernel's BTF.
pub fn resolve_offsets(btf: &Btf) -> Result<Offsets> {
    let f = |s: &str, p: &str| btf.field(s, p).map(|f| f.offset);
    // `data[IPV4_DEVCONF_ARP_ANNOUNCE - 1]`; the index is UAPI (linux/ip.h), so 18 is the
    // value on every kernel that lacks it in BTF.
    let announce = 4
        * (btf
            .enum_value("", "IPV4_DEVCONF_ARP_ANNOUNCE")
            .unwrap_or(18) as u32
            - 1);
    let localnet = 4
        * (btf
            .enum_value("", "IPV4_DEVCONF_ROUTE_LOCALNET")
            .unwrap_or(26) as u32
            - 1);
    let notify = 4 * (btf.enum_value("", "IPV4_DEVCONF_ARP_NOTIFY").unwrap_or(22) as u32 - 1);
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
        dev_ip_ptr: f("net_device", "ip_ptr")?,
        indev_arp_announce: f("in_device", "cnf.data")? + announce,
        indev_ifa_list: f("in_device", "ifa_list")?,
        ifa_next: f("in_ifaddr", "ifa_next")?,
        ifa_local: f("in_ifaddr", "ifa_local")?,
        ifa_prefixlen: f("in_ifaddr", "ifa_prefixlen")?,
        ifa_scope: f("in_ifaddr", "ifa_scope")?,
        ifa_flags: f("in_ifaddr", "ifa_flags")?,
        net_devconf_all: f("net", "ipv4.devconf_all")?,
        devconf_arp_announce: f("ipv4_devconf", "data")? + announce,
        ifa_address: f("in_ifaddr", "ifa_address")?,
        indev_route_localnet: f("in_device", "cnf.data")? + localnet,
        devconf_route_localnet: f("ipv4_devconf", "data")? + localnet,
        indev_arp_notify: f("in_device", "cnf.data")? + notify,
        devconf_arp_notify: f("ipv4_devconf", "data")? + notify,
        net_dev_base_head: f("net", "dev_base_head")?,
        dev_dev_list: f("net_device", "dev_list")?,
        // Absent on a kernel without IPv6: the program then reports no IPv6 state.
        dev_ip6_ptr: f("net_device", "ip6_ptr").unwrap_or(u32::MAX),
        in6_addr_list: f("inet6_dev", "addr_list").unwrap_or(0),
        ifa6_if_list: f("inet6_ifaddr", "if_list").unwrap_or(0),
        ifa6_addr: f("inet6_ifaddr", "addr").unwrap_or(0),
        ifa6_prefix_len: f("inet6_ifaddr", "prefix_len").unwrap_or(0),
        ifa6_scope: f("inet6_ifaddr", "scope").unwrap_or(0),
        ifa6_flags: f("inet6_ifaddr", "flags").unwrap_or(0),
        skb_data: f("sk_buff", "data")?,
        neigh_ha: f("neighbour", "ha")?,
        dev_addr_len: f("net_device", "addr_len")?,
        // Only the direct-load path (6.12 on) reads these; a kernel without them only loses
        // the shortcut.
        sk_family: f("sock", "__sk_common.skc_family").unwrap_or(u32::MAX),
        sk_protocol: f("sock", "sk_protocol").unwrap_or(u32::MAX),
        file_inode: f("file", "f_inode")?,
        inode_ino: f("inode", "i_ino")?,
    };
    Ok(o)
}

/// Enum values the programs compare against.
pub fn resolve_config(btf: &Btf, syms: &Kallsyms) -> Config {
    let mut cfg = Config::UNSET;
    let reason = |n: &str| btf.enum_value("skb_drop_reason", n).unwrap_or(0) as u32;
    cfg.drop_neigh_failed = reason("SKB_DROP_REASON_NEIGH_FAILED");
    cfg.drop_neigh_queuefull = reason("SKB_DROP_REASON_NEIGH_QUEUEFULL");
    cfg.drop_not_specified = reason("SKB_DROP_REASON_NOT_SPECIFIED");
    cfg.xmit_direct = super::hooks::xmit_direct(&super::hooks::kernel_release()) as u32;
    // One copy of each only: a second one (an unexpected build) leaves drops unattributed
    // rather than claim another function's.
    for (i, f) in NDISC_DROP_SITES.into_iter().enumerate() {
        if let [(start, end)] = syms.ranges(f)[..] {
            cfg.ndisc_drop_ranges[i] = [start, end];
        }
    }
    let _ = super::context::preempt_context(btf, &mut cfg);
    cfg
}

/// Whether `hook` is attached: the receive side only when asked for, and the softirq
/// tracepoints only where the programs do not read the preempt count instead.
fn attached(hook: &Hook, receive: bool, config: &Config) -> bool {
    (receive || !hook.role.receive_side())
        && !(hook.role == Role::Context && config.ctx_preempt != 0)
}

/// The errno behind a load or attach failure, in a few words for the start-up line.
pub fn short_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(code) = io.raw_os_error() {
                return match code {
                    libc::EPERM => "refused by kernel (EPERM)".into(),
                    libc::EACCES => "refused by kernel (EACCES)".into(),
                    libc::ENOENT => "not found in this kernel (ENOENT)".into(),
                    libc::EINVAL => "rejected by kernel (EINVAL)".into(),
                    libc::E2BIG => "rejected by kernel (E2BIG)".into(),
                    524 => "not supported by this kernel (ENOTSUPP)".into(),
                    libc::EOPNOTSUPP => "not supported by this kernel (EOPNOTSUPP)".into(),
                    _ => format!("failed: {io}"),
                };
            }
        }
        source = e.source();
    }
    let text = err.to_string();
    format!("failed: {}", text.lines().next().unwrap_or(&text))
}

/// Verifies the common hooks' programs side by side, one thread each: the kernel's verifier
/// is most of arp-trace's start-up, and each program's is independent of the others'.
/// Failures are left for `attach_program` to report, which loads what is not loaded yet.
fn preload_common(ebpf: &mut Ebpf, btf: &aya::Btf, receive: bool, config: &Config) {
    let wanted: Vec<(&str, &str)> = common_hooks()
        .filter(|h| attached(h, receive, config))
        .filter_map(|h| Some((h.program?, h.attach.split_once('/')?.1)))
        .collect();
    let progs: Vec<(&str, &mut aya::programs::Program)> = ebpf
        .programs_mut()
        .filter_map(|(name, prog)| {
            let target = wanted.iter().find(|(w, _)| *w == name)?.1;
            Some((target, prog))
        })
        .collect();
    std::thread::scope(|s| {
        for (target, prog) in progs {
            s.spawn(move || {
                if let Ok(p) = <&mut BtfTracePoint>::try_from(prog) {
                    let _ = p.load(target, btf);
                }
            });
        }
    });
}

/// Loads (unless loaded already) and attaches one program; the error is `short_cause`'s.
fn attach_program(
    ebpf: &mut Ebpf,
    program: &str,
    hook: &str,
    btf: &aya::Btf,
) -> std::result::Result<(), String> {
    let cause = |e: aya::programs::ProgramError| short_cause(&e);
    let prog = ebpf
        .program_mut(program)
        .ok_or_else(|| format!("eBPF object has no {program} program"))?;
    let (kind, target) = hook.split_once('/').unwrap_or((hook, ""));
    match kind {
        "fentry" => {
            let p: &mut FEntry = prog.try_into().map_err(cause)?;
            p.load(target, btf).map_err(cause)?;
            p.attach().map_err(cause)?;
        }
        "kprobe" => {
            let p: &mut KProbe = prog.try_into().map_err(cause)?;
            p.load().map_err(cause)?;
            p.attach(target, 0).map_err(cause)?;
        }
        _ => {
            let p: &mut BtfTracePoint = prog.try_into().map_err(cause)?;
            if p.fd().is_err() {
                p.load(target, btf).map_err(cause)?;
            }
            p.attach().map_err(cause)?;
        }
    }
    Ok(())
}

/// Puts a solicit path to work: attaches its program, or for the tracepoint path tells the
/// neighbour programs (attached already) to read the packet from the queue.
fn use_path(ebpf: &mut Ebpf, path: SolicitPath, btf: &aya::Btf) -> std::result::Result<(), String> {
    let hook = path.hook();
    if let Some(program) = hook.program {
        return attach_program(ebpf, program, hook.attach, btf);
    }
    let map = ebpf
        .map_mut("SETTINGS")
        .ok_or("eBPF object has no SETTINGS map")?;
    let mut settings: Array<&mut MapData, u32> =
        Array::try_from(map).map_err(|e| short_cause(&e))?;
    settings
        .set(0, SETTING_QUEUE_TRIGGER, 0)
        .map_err(|e| short_cause(&e))
}

/// Loaded and attached programs. Dropping it detaches everything (no pins are made).
pub struct Tracer {
    pub ebpf: Ebpf,
    pub hooks: Vec<InUse>,
    /// The solicit path in use.
    pub solicit: SolicitPath,
    /// Better paths that were not usable, with why.
    pub passed_over: Vec<(SolicitPath, String)>,
}

pub struct LoadOptions {
    /// Ring buffer size in bytes (power of two, multiple of the page size).
    pub buffer_bytes: u32,
    pub hooks: HookChoice,
    /// Attach the receive side's hooks (`--direction` is not `out`).
    pub receive: bool,
}

/// Whether the eBPF programs were compiled in (not with AYA_BUILD_SKIP).
pub fn has_programs() -> bool {
    !EBPF_OBJECT.is_empty()
}

/// One hook tried by `probe_hooks`.
pub struct Probe {
    pub hook: &'static Hook,
    /// Attached (and detached again), or why not.
    pub result: std::result::Result<(), String>,
}

/// Builds the object with this kernel's layouts; programs are loaded one by one later.
fn open_object(offsets: &Offsets, config: &Config, buffer_bytes: u32) -> Result<(Ebpf, aya::Btf)> {
    if EBPF_OBJECT.is_empty() {
        bail!(
            "this arp-trace was built without its eBPF programs (AYA_BUILD_SKIP); rebuild it \
             with `cargo xtask build`"
        );
    }
    // EbpfLoader::new() parses the kernel's BTF for itself (~14 MB). Dropped before the copy
    // the programs' loads need is parsed: holding both at once was the run's peak RSS.
    let mut loader = EbpfLoader::new();
    loader.btf(None);
    let aya_btf = aya::Btf::from_sys_fs()
        .map_err(|e| anyhow!("cannot read the kernel's BTF (/sys/kernel/btf/vmlinux): {e}"))?;
    let ebpf = loader
        .btf(Some(&aya_btf))
        .override_global("OFFSETS", offsets, true)
        .override_global("CONFIG", config, true)
        .map_max_entries("EVENTS", buffer_bytes)
        .load(EBPF_OBJECT)
        .map_err(|e| explain_bpf_error("loading the eBPF programs", e))?;
    Ok((ebpf, aya_btf))
}

/// Tries every hook arp-trace knows on the running kernel, attaching each and detaching it
/// again when the returned list is built (for `arp-trace doctor`).
///
/// Takes the BTF by value, as `Tracer::load` does: it is dropped before aya parses its own
/// copies (see `open_object`), so no two of them (~12 MB each) are held at once.
pub fn probe_hooks(btf: Btf, syms: &Kallsyms) -> Result<Vec<Probe>> {
    let features = Features::gather(&btf, syms);
    let offsets = resolve_offsets(&btf).context("reading kernel structure layouts from BTF")?;
    let config = resolve_config(&btf, syms);
    drop(btf);
    // SAFETY: malloc_trim only releases free memory; aya's own BTF parse comes next.
    unsafe { libc::malloc_trim(0) };
    let (mut ebpf, aya_btf) = open_object(&offsets, &config, 4096)?;
    let mut out = Vec::new();
    for hook in common_hooks() {
        let program = hook.program.expect("common hooks have programs");
        let result = attach_program(&mut ebpf, program, hook.attach, &aya_btf);
        out.push(Probe { hook, result });
    }
    let neighbour_ok = out
        .iter()
        .filter(|p| p.hook.role == Role::Neighbour)
        .all(|p| p.result.is_ok());
    for path in SolicitPath::ALL {
        let hook = path.hook();
        let result = match features.precheck(hook) {
            Some(why) => Err(why),
            None if hook.requires == Requires::NeighbourHooks && !neighbour_ok => {
                Err("needs the neighbour tracepoints above".into())
            }
            None => use_path(&mut ebpf, path, &aya_btf),
        };
        out.push(Probe { hook, result });
    }
    drop(ebpf);
    Ok(out)
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
    /// Takes the BTF by value: it is dropped before aya parses its own copies (see
    /// `open_object`), so no two of them (~12 MB each) are held at once.
    pub fn load(btf: Btf, syms: &Kallsyms, opts: &LoadOptions) -> Result<Tracer> {
        let offsets = resolve_offsets(&btf).context("reading kernel structure layouts from BTF")?;
        let config = resolve_config(&btf, syms);
        let features = Features::gather(&btf, syms);
        drop(btf);
        // SAFETY: malloc_trim only releases free memory; aya's own BTF parse comes next.
        unsafe { libc::malloc_trim(0) };
        let (mut ebpf, aya_btf) = open_object(&offsets, &config, opts.buffer_bytes)?;
        preload_common(&mut ebpf, &aya_btf, opts.receive, &config);
        let mut hooks = Vec::new();
        for hook in common_hooks().filter(|h| attached(h, opts.receive, &config)) {
            let program = hook.program.expect("common hooks have programs");
            attach_program(&mut ebpf, program, hook.attach, &aya_btf).map_err(|why| {
                anyhow!(
                    "{}: {why}; arp-trace cannot see ARP without it",
                    hook.attach
                )
            })?;
            hooks.push(InUse {
                role: hook.role.name(),
                name: hook.attach,
            });
        }

        let mut passed_over = Vec::new();
        let mut solicit = None;
        for path in opts.hooks.candidates() {
            let result = match features.precheck(path.hook()) {
                Some(why) => Err(why),
                None => use_path(&mut ebpf, path, &aya_btf),
            };
            match result {
                Ok(()) => {
                    solicit = Some(path);
                    break;
                }
                Err(why) => passed_over.push((path, why)),
            }
        }
        let Some(solicit) = solicit else {
            let why: Vec<String> = passed_over
                .iter()
                .map(|(p, w)| format!("{}: {w}", p.name()))
                .collect();
            if opts.hooks == HookChoice::Auto {
                bail!(
                    "no way to see arp_solicit()'s packet on this kernel ({}); run \
                     `arp-trace doctor` for details",
                    why.join("; ")
                );
            }
            let (path, why) = &passed_over[0];
            bail!(
                "--hooks {} cannot be used ({}): {why}; use --hooks auto (`arp-trace doctor` \
                 shows what works here)",
                path.name(),
                path.hook().attach
            );
        };
        hooks.insert(
            0,
            InUse {
                role: Role::Solicit.name(),
                name: solicit.hook().attach,
            },
        );
        drop(aya_btf);
        // Both BTF parses are gone; hand their pages back instead of keeping the high-water
        // mark for the whole run (glibc keeps freed heap otherwise).
        // SAFETY: malloc_trim only releases free memory.
        unsafe { libc::malloc_trim(0) };
        Ok(Tracer {
            ebpf,
            hooks,
            solicit,
            passed_over,
        })
    }

    pub fn events(&mut self) -> Result<RingBuf<MapData>> {
        let map = self
            .ebpf
            .take_map("EVENTS")
            .context("eBPF object has no EVENTS map")?;
        Ok(RingBuf::try_from(map)?)
    }

    /// Records the ring buffer had no room for, per CPU.
    pub fn lost(&mut self) -> Result<PerCpuArray<MapData, u64>> {
        self.counter("LOST")
    }

    /// Records discarded because a kernel read failed, per CPU.
    pub fn discarded(&mut self) -> Result<PerCpuArray<MapData, u64>> {
        self.counter("DISCARDED")
    }

    fn counter(&mut self, name: &str) -> Result<PerCpuArray<MapData, u64>> {
        let map = self
            .ebpf
            .take_map(name)
            .with_context(|| format!("eBPF object has no {name} map"))?;
        Ok(PerCpuArray::try_from(map)?)
    }
}

/// Runs of this process's BPF programs the kernel skipped because the program was already
/// active on that CPU (`recursion_misses` in each program's fdinfo, Linux 5.12+).
pub fn recursion_misses() -> u64 {
    // Which descriptors are programs, found once: reading every descriptor's fdinfo each
    // second cost milliseconds, a fixed cost that made a slow storm's CPU per request look
    // worse. A descriptor that is no longer a program drops out and a new scan follows.
    static PROGRAMS: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());
    let mut programs = PROGRAMS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = misses_of(&programs) {
        return n;
    }
    let Ok(dir) = std::fs::read_dir("/proc/self/fdinfo") else {
        return 0;
    };
    *programs = dir
        .flatten()
        .map(|e| e.path())
        .filter(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains("prog_type:")))
        .collect();
    misses_of(&programs).unwrap_or(0)
}

/// The sum over `fdinfo` files that are all still programs' (none when the list is empty).
fn misses_of(fdinfo: &[std::path::PathBuf]) -> Option<u64> {
    if fdinfo.is_empty() {
        return None;
    }
    let mut sum = 0;
    for p in fdinfo {
        let t = std::fs::read_to_string(p).ok()?;
        if !t.contains("prog_type:") {
            return None;
        }
        sum += t
            .lines()
            .find_map(|l| l.strip_prefix("recursion_misses:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(sum)
}

/// Sum of a per-CPU counter (`lost`, `discarded`).
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
