//! Network namespaces: the kernel reports them by inode; this layer finds a path that opens
//! one, names them as `ip netns` does, enters them on a thread of their own, reads their
//! interfaces, addresses and sysctls (rtnetlink and /proc/sys), keeps watching those that
//! requests come from, and snapshots them all for a trace's header.

pub mod coarse;
pub mod enter;
pub mod find;
pub mod names;
pub mod rtnetlink;
pub mod snapshot;
pub mod sysctl;
pub mod watch;

pub use find::{find_path, inode_of, own_inode, NETNS_RUN_DIR};
pub use names::{resolve_spec, NetnsNames};
