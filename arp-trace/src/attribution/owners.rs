//! Who sent a packet: the process in whose context the send reached the neighbour code, or
//! the process holding the socket's inode (from /proc/*/fd, as `ss -p` finds it), or the
//! kernel; with a bounded cache of owners seen, so retransmits after a process exited still
//! name it.
//!
//! The cache is keyed by the socket's inode only, never by the `struct sock` address: the slab
//! hands a freed sock's address to the next socket, which may be another process's, while an
//! inode number is not given out again. A socket its process has closed (an orphan, with no
//! inode) is therefore reported as a local sender whose process is unknown.

use foldhash::HashMap;
use std::borrow::Cow;
use std::time::{Duration, Instant};

use arp_trace_common::{
    CONTEXT_TASK, TRIGGER_HAS_SK, TRIGGER_NO_FILE, TRIGGER_ORPHAN, TRIGGER_REQUEST_SK,
};
use arp_trace_model::Origin;

use crate::kernel::ring::cstr;

/// Socket inode -> owning process, from /proc/*/fd (what `ss -p` does), cached.
pub struct SocketOwners {
    map: HashMap<u64, (u32, Cow<'static, str>)>,
    last_scan: Option<Instant>,
    /// Inodes a scan did not find, and when: each is looked for again at most once a second.
    misses: HashMap<u64, Instant>,
}

/// Scans of /proc run at most this often, whatever asks for them.
const SCAN_FLOOR: Duration = Duration::from_millis(10);
/// An inode no process held is looked for again after this long.
const MISS_RETRY: Duration = Duration::from_secs(1);

impl SocketOwners {
    pub fn new() -> Self {
        SocketOwners {
            map: HashMap::default(),
            last_scan: None,
            misses: HashMap::default(),
        }
    }

    /// Remembers the owner of socket inode `ino` seen in task context, so retransmits after
    /// the process exited still name it.
    pub fn learn(&mut self, ino: u64, pid: u32, comm: &str) {
        // A socket sends many packets: its owner is usually known already, and unchanged.
        if self
            .map
            .get(&ino)
            .is_some_and(|(p, c)| *p == pid && c == comm)
        {
            return;
        }
        // Bounded: a busy host's history is not worth unbounded memory.
        if self.map.len() > 65_536 {
            self.map.clear();
        }
        if ino != 0 {
            self.map
                .insert(ino, (pid, arp_trace_model::intern::name(comm)));
        }
    }

    /// The owner of socket inode `ino` (0: the socket has none).
    pub fn lookup(&mut self, ino: u64) -> Option<(u32, Cow<'static, str>)> {
        if ino == 0 {
            return None;
        }
        if let Some(v) = self.map.get(&ino) {
            return Some(v.clone());
        }
        // A socket made since the last scan (an accepted connection, say) is new to us: scan
        // for it, but not again and again for one that no process holds.
        if self
            .misses
            .get(&ino)
            .is_some_and(|t| t.elapsed() < MISS_RETRY)
            || self.last_scan.is_some_and(|t| t.elapsed() < SCAN_FLOOR)
        {
            return None;
        }
        self.scan();
        let found = self.map.get(&ino).cloned();
        if found.is_none() {
            if self.misses.len() > 4096 {
                self.misses.clear();
            }
            self.misses.insert(ino, Instant::now());
        }
        found
    }

    fn scan(&mut self) {
        self.last_scan = Some(Instant::now());
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return;
        };
        for p in procs.flatten() {
            let Ok(pid) = p.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
                continue;
            };
            let mut comm = None;
            for fd in fds.flatten() {
                let Ok(target) = std::fs::read_link(fd.path()) else {
                    continue;
                };
                let t = target.to_string_lossy();
                if let Some(ino) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                    if let Ok(ino) = ino.parse::<u64>() {
                        let c = comm.get_or_insert_with(|| {
                            std::fs::read(p.path().join("comm"))
                                .map(|b| {
                                    arp_trace_model::intern::kernel_name(
                                        b.strip_suffix(b"\n").unwrap_or(&b),
                                    )
                                })
                                .unwrap_or_default()
                        });
                        self.map.entry(ino).or_insert((pid, c.clone()));
                    }
                }
            }
        }
    }
}

impl Default for SocketOwners {
    fn default() -> Self {
        Self::new()
    }
}

/// What the kernel side read about a packet's socket and the context it was sent from.
pub struct Owner<'a> {
    pub flags: u32,
    pub sk_ino: u64,
    pub pid_tgid: u64,
    pub comm: &'a [u8],
    /// `CONTEXT_*` the kernel side ran in when it read `pid_tgid` and `comm`.
    pub context: u32,
    /// False where `current` cannot be the sender (drops happen in timers).
    pub may_be_current: bool,
}

/// Origin, pid and comm of a packet with a socket; None when it has none.
pub fn resolve_owner(
    o: &Owner<'_>,
    owners: &mut SocketOwners,
) -> Option<(Origin, Option<u32>, Option<Cow<'static, str>>)> {
    if o.flags & TRIGGER_HAS_SK == 0 {
        return None;
    }
    // Unless task context is known, `current` is never trusted.
    let task_ctx =
        o.may_be_current && o.context == CONTEXT_TASK && o.flags & TRIGGER_REQUEST_SK == 0;
    if task_ctx && o.flags & TRIGGER_NO_FILE == 0 {
        // In task context `current` is the process whose send reached the neighbour code.
        let pid = (o.pid_tgid >> 32) as u32;
        let comm = cstr(o.comm);
        owners.learn(o.sk_ino, pid, &comm);
        return Some((Origin::Local, Some(pid), Some(comm)));
    }
    if let Some((pid, comm)) = owners.lookup(o.sk_ino) {
        return Some((Origin::Local, Some(pid), Some(comm)));
    }
    if (o.flags & TRIGGER_NO_FILE == 0 && o.sk_ino != 0) || o.flags & TRIGGER_ORPHAN != 0 {
        return Some((Origin::Local, None, None)); // a user socket whose process is gone
    }
    Some((Origin::Kernel, None, None))
}

/// When the queue no longer holds the packet (the reply arrived inside the solicit, as on
/// veth), the sender is still `current` if the solicit ran in task context.
pub(super) fn current_if_task(
    o: &Owner<'_>,
) -> Option<(Origin, Option<u32>, Option<Cow<'static, str>>)> {
    if o.context != CONTEXT_TASK || o.pid_tgid >> 32 == 0 {
        return None;
    }
    Some((
        Origin::Local,
        Some((o.pid_tgid >> 32) as u32),
        Some(cstr(o.comm)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket closed while another process opens one the slab puts at the same address:
    /// the new socket's packets must not be named after the old owner.
    #[test]
    fn a_reused_sock_address_does_not_name_the_old_owner() {
        let mut o = SocketOwners::new();
        o.learn(100, 4242, "old");
        // The new socket's inode (200) is held by no process this test can see: unknown, not
        // the old owner of the address both sockets had.
        assert_eq!(o.lookup(100), Some((4242, "old".into())));
        assert_ne!(o.lookup(200).map(|(p, _)| p), Some(4242));
        o.learn(200, 777, "new");
        assert_eq!(o.lookup(200), Some((777, "new".into())));
        assert_eq!(o.lookup(0), None);
    }
}
