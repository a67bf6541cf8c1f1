//! What the loader hands the programs before they run: the running kernel's field offsets,
//! its drop reasons and the `SETTINGS` flags. Apart from the records because it flows the
//! other way, from user space into the kernel, and every program depends on it.

/// `SETTINGS[0]` flag: the tracepoint path is in use, so the neighbour tracepoints read the
/// solicited packet from the neighbour's queue (no hook sees `arp_solicit()` itself).
pub const SETTING_QUEUE_TRIGGER: u32 = 1;

/// Byte offsets of the kernel fields the programs read, taken from the running kernel's BTF
/// at start-up (Rust eBPF gets no CO-RE relocations, so layouts must not be compiled in).
///
/// An offset of `u32::MAX` marks a field the running kernel does not have.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offsets {
    pub skb_head: u32,
    pub skb_len: u32,
    pub skb_protocol: u32,
    pub skb_mac_header: u32,
    pub skb_network_header: u32,
    pub skb_dev: u32,
    pub skb_mark: u32,
    pub skb_iif: u32,
    pub dev_ifindex: u32,
    pub dev_name: u32,
    pub dev_nd_net: u32,
    pub net_ns_inum: u32,
    pub skb_sk: u32,
    pub sk_state: u32,
    pub sk_socket: u32,
    pub rsk_listener: u32,
    pub socket_file: u32,
    /// `socket_alloc.vfs_inode` (the socket itself is at offset 0) plus `inode.i_ino`.
    pub socket_ino: u32,
    pub neigh_nud_state: u32,
    pub neigh_probes: u32,
    pub neigh_qlen: u32,
    pub neigh_dev: u32,
    pub neigh_key: u32,
    pub neigh_tbl: u32,
    pub tbl_family: u32,
    /// `neighbour.arp_queue` and `neighbour.arp_queue.prev` (the queue's tail).
    pub neigh_queue: u32,
    pub neigh_queue_tail: u32,
    pub neigh_parms: u32,
    /// `neigh_parms.data[NEIGH_VAR_UCAST_PROBES]`
    pub parms_ucast_probes: u32,
    /// `net_device.ip_ptr` (the device's `struct in_device`).
    pub dev_ip_ptr: u32,
    /// `in_device.cnf.data[IPV4_DEVCONF_ARP_ANNOUNCE - 1]`
    pub indev_arp_announce: u32,
    pub indev_ifa_list: u32,
    pub ifa_next: u32,
    pub ifa_local: u32,
    pub ifa_prefixlen: u32,
    pub ifa_scope: u32,
    pub ifa_flags: u32,
    /// `net.ipv4.devconf_all` (pointer to the namespace's `all` settings).
    pub net_devconf_all: u32,
    /// `ipv4_devconf.data[IPV4_DEVCONF_ARP_ANNOUNCE - 1]`
    pub devconf_arp_announce: u32,
    /// `in_ifaddr.ifa_address`: the peer of a point-to-point address, else the local one.
    pub ifa_address: u32,
    /// `in_device.cnf.data[IPV4_DEVCONF_ROUTE_LOCALNET - 1]` and the same in `ipv4_devconf`.
    pub indev_route_localnet: u32,
    pub devconf_route_localnet: u32,
    /// `in_device.cnf.data[IPV4_DEVCONF_ARP_NOTIFY - 1]` and the same in `ipv4_devconf`.
    pub indev_arp_notify: u32,
    pub devconf_arp_notify: u32,
    /// `net.dev_base_head` and `net_device.dev_list`: the namespace's device list, in the
    /// order inet_select_addr() walks it.
    pub net_dev_base_head: u32,
    pub dev_dev_list: u32,
    /// `net_device.ip6_ptr` and the `inet6_dev`/`inet6_ifaddr` fields `ndisc_solicit()`'s
    /// choice reads (`u32::MAX` on a kernel built without IPv6).
    pub dev_ip6_ptr: u32,
    pub in6_addr_list: u32,
    pub ifa6_if_list: u32,
    pub ifa6_addr: u32,
    pub ifa6_prefix_len: u32,
    pub ifa6_scope: u32,
    pub ifa6_flags: u32,
    /// `sk_buff.data`: where a received frame's ARP header starts at `netif_receive_skb`,
    /// which fires before the network header is set.
    pub skb_data: u32,
    /// `neighbour.ha` (the entry's link-layer address) and `net_device.addr_len`.
    pub neigh_ha: u32,
    pub dev_addr_len: u32,
    /// `sock.__sk_common.skc_family` and `sock.sk_protocol`: which IPv6 frames come from a
    /// local TCP or UDP socket, and so cannot be neighbour discovery (`u32::MAX`: not read).
    pub sk_family: u32,
    pub sk_protocol: u32,
    /// `file.f_inode` and `inode.i_ino`: a socket's inode number through its file, with
    /// direct loads (`socket_ino` lies beyond `struct socket`, out of a direct load's reach).
    pub file_inode: u32,
    pub inode_ino: u32,
}

impl Offsets {
    pub const UNSET: Offsets = Offsets {
        skb_head: u32::MAX,
        skb_len: u32::MAX,
        skb_protocol: u32::MAX,
        skb_mac_header: u32::MAX,
        skb_network_header: u32::MAX,
        skb_dev: u32::MAX,
        skb_mark: u32::MAX,
        skb_iif: u32::MAX,
        dev_ifindex: u32::MAX,
        dev_name: u32::MAX,
        dev_nd_net: u32::MAX,
        net_ns_inum: u32::MAX,
        skb_sk: u32::MAX,
        sk_state: u32::MAX,
        sk_socket: u32::MAX,
        rsk_listener: u32::MAX,
        socket_file: u32::MAX,
        socket_ino: u32::MAX,
        neigh_nud_state: u32::MAX,
        neigh_probes: u32::MAX,
        neigh_qlen: u32::MAX,
        neigh_dev: u32::MAX,
        neigh_key: u32::MAX,
        neigh_tbl: u32::MAX,
        tbl_family: u32::MAX,
        neigh_queue: u32::MAX,
        neigh_queue_tail: u32::MAX,
        neigh_parms: u32::MAX,
        parms_ucast_probes: u32::MAX,
        dev_ip_ptr: u32::MAX,
        indev_arp_announce: u32::MAX,
        indev_ifa_list: u32::MAX,
        ifa_next: u32::MAX,
        ifa_local: u32::MAX,
        ifa_prefixlen: u32::MAX,
        ifa_scope: u32::MAX,
        ifa_flags: u32::MAX,
        net_devconf_all: u32::MAX,
        devconf_arp_announce: u32::MAX,
        ifa_address: u32::MAX,
        indev_route_localnet: u32::MAX,
        devconf_route_localnet: u32::MAX,
        indev_arp_notify: u32::MAX,
        devconf_arp_notify: u32::MAX,
        net_dev_base_head: u32::MAX,
        dev_dev_list: u32::MAX,
        dev_ip6_ptr: u32::MAX,
        in6_addr_list: u32::MAX,
        ifa6_if_list: u32::MAX,
        ifa6_addr: u32::MAX,
        ifa6_prefix_len: u32::MAX,
        ifa6_scope: u32::MAX,
        ifa6_flags: u32::MAX,
        skb_data: u32::MAX,
        neigh_ha: u32::MAX,
        dev_addr_len: u32::MAX,
        sk_family: u32::MAX,
        sk_protocol: u32::MAX,
        file_inode: u32::MAX,
        inode_ino: u32::MAX,
    };
}

/// Everything else the loader decides from BTF before the programs are loaded.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// `enum skb_drop_reason` values of NEIGH_FAILED and NEIGH_QUEUEFULL on this kernel
    /// (0 when the kernel has no drop reasons).
    pub drop_neigh_failed: u32,
    pub drop_neigh_queuefull: u32,
    /// `SKB_DROP_REASON_NOT_SPECIFIED`: what a plain `kfree_skb()` reports.
    pub drop_not_specified: u32,
    /// 1 when `net_dev_queue` reads the skb and its device with direct loads, 0 with
    /// `bpf_probe_read_kernel()`: the 6.1 verifier gives up on the direct loads (E2BIG), so
    /// the loader sets it only for kernels whose verifier is known to take them.
    pub xmit_direct: u32,
    /// `[start, end)` of `ndisc_error_report()`, which frees an IPv6 neighbour's queued
    /// packets one by one with a plain `kfree_skb()` when the entry fails (ARP's
    /// `arp_error_report()` names NEIGH_FAILED instead), of `neigh_invalidate()`, its
    /// caller, where the drop is seen when the compiler made that free a tail call, and of
    /// `neigh_timer_handler()`, where that caller is when it was inlined; 0 when unknown.
    pub ndisc_drop_ranges: [[u64; 2]; 3],
    /// 1 when the programs tell a softirq from a task by the preempt count (x86-64 with
    /// `CONFIG_FAIR_GROUP_SCHED`, not PREEMPT_RT), and the softirq tracepoints stay
    /// unattached: this CPU's copy of the per-CPU `__preempt_count` lies at a fixed distance
    /// from its `runqueues`, which `current->se.cfs_rq->rq` points to.
    pub ctx_preempt: u32,
    /// `task_struct.se.cfs_rq` and `cfs_rq.rq`.
    pub task_se_cfs_rq: u32,
    pub cfs_rq_rq: u32,
    /// Where `CTX_WINDOW` bytes are read, from this CPU's `runqueues`; they hold its
    /// `current_task` (checked against `current`, so a wrong layout names nobody) at
    /// `ctx_task_at` and its preempt count at `ctx_count_at`.
    pub ctx_window: i32,
    pub ctx_task_at: u32,
    pub ctx_count_at: u32,
}

/// Bytes read around `current_task` and the preempt count ([`Config::ctx_window`]): 6.1 has
/// them 64 bytes apart (`current_task` is cache-line aligned), 6.12 8, 6.18 24.
pub const CTX_WINDOW: usize = 72;

impl Config {
    pub const UNSET: Config = Config {
        drop_neigh_failed: 0,
        drop_neigh_queuefull: 0,
        drop_not_specified: 0,
        xmit_direct: 0,
        ndisc_drop_ranges: [[0; 2]; 3],
        ctx_preempt: 0,
        task_se_cfs_rq: 0,
        cfs_rq_rq: 0,
        ctx_window: 0,
        ctx_task_at: 0,
        ctx_count_at: 0,
    };
}
