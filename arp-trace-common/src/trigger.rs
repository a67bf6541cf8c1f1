//! The packet a request was sent for, or one dropped from a neighbour's queue
//! (`TriggerEvent`), and its owner's `TRIGGER_*` flags. Apart because it describes the IP
//! packet and its socket, not the ARP frame: it joins its request only in user space.

use crate::NAME_LEN;

/// Bytes of the triggering packet copied from its IP header on (header plus L4 ports/type).
pub const IP_CAP: usize = 64;
/// `TriggerEvent::flags`
pub const TRIGGER_HAS_SK: u32 = 1;
/// The socket is a request socket (SYN-ACK); `sk_ino` is its listener's.
pub const TRIGGER_REQUEST_SK: u32 = 2;
/// The socket has no file (kernel socket, or TIME_WAIT).
pub const TRIGGER_NO_FILE: u32 = 4;
/// A full socket its process has closed (`sk_socket` is NULL): queued data of a local
/// sender outliving it, not a packet of the kernel's own.
pub const TRIGGER_ORPHAN: u32 = 8;

/// The packet the kernel passed to `arp_solicit()`, or one it dropped from a neighbour queue.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TriggerEvent {
    /// `EVENT_TRIGGER` or `EVENT_NEIGH_DROP`.
    pub kind: u32,
    pub cpu: u32,
    pub ts_ns: u64,
    /// `ArpXmitEvent::seq` of the request this trigger belongs to on the same CPU (0: none).
    pub req_seq: u64,
    pub pid_tgid: u64,
    /// Inode of the socket owning the packet (its listener's for a SYN-ACK); 0 if none.
    pub sk_ino: u64,
    /// The owning `struct sock` (identifies the socket after its process closed it).
    pub sk: u64,
    pub netns: u32,
    pub ifindex: u32,
    pub iif: u32,
    pub mark: u32,
    pub skb_len: u32,
    pub flags: u32,
    pub drop_reason: u32,
    /// `CONTEXT_*` the program ran in: whether `pid_tgid` and `comm` can be the sender.
    pub context: u32,
    /// `HOOK_*` that saw the packet.
    pub hook: u32,
    /// `FAMILY_INET` or `FAMILY_INET6`: how to read `ip` and `target`.
    pub family: u32,
    /// The neighbour being solicited (`primary_key`; IPv4 in the first 4 bytes), when the
    /// hook knows it; else zero.
    pub target: [u8; 16],
    pub comm: [u8; NAME_LEN],
    pub ip: [u8; IP_CAP],
}
