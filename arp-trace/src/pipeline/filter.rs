//! What the user asked to see (`-i`, `--netns`, `-4`/`-6`, `--direction`, `--pid`/`--comm`):
//! the filters every record passes before it is counted and handed to the sinks.

use arp_trace_model::{Direction, Family, Trigger};

/// A filter's set: looked up for every record, with a fast hash (the keys are the user's).
pub type HashSet<T> = foldhash::HashSet<T>;

/// What the user asked to see: `-i`, `--netns`, `-4`/`-6`. Empty sets mean all.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub interfaces: HashSet<String>,
    /// Namespace inodes.
    pub netns: HashSet<u32>,
    /// Namespace names, matched against the name a record carries (replay: names as the
    /// trace knew them).
    pub netns_names: HashSet<String>,
    /// `--pid` and `--comm`: the processes whose packets a request must have been caused by.
    pub processes: Processes,
    /// `-4` or `-6` alone: only ARP or only neighbour discovery; `None` for both.
    pub family: Option<Family>,
    /// `--direction in` or `out`: only received or only transmitted frames; `None` for both.
    pub direction: Option<Direction>,
}

/// `--pid PID` and `--comm NAME`: a request passes when its trigger's process is any of them.
#[derive(Debug, Default, Clone)]
pub struct Processes {
    pub pids: HashSet<u32>,
    /// As the kernel keeps them: at most [`COMM_LEN`] bytes.
    pub comms: HashSet<String>,
}

/// The kernel's `TASK_COMM_LEN` less its NUL: a longer name given to `--comm` matches the
/// 15 bytes the kernel kept of it.
pub const COMM_LEN: usize = 15;

impl Processes {
    pub fn new(pids: &[u32], comms: &[String]) -> Processes {
        Processes {
            pids: pids.iter().copied().collect(),
            comms: comms
                .iter()
                .map(|c| arp_trace_model::text::clip(c, COMM_LEN).to_string())
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pids.is_empty() && self.comms.is_empty()
    }

    /// Whether the packet behind a request (or one a failed entry dropped) came from one of
    /// the processes; a packet with no process (forwarded, softirq) never does.
    pub fn caused(&self, t: Option<&Trigger<'_>>) -> bool {
        let Some(t) = t else { return false };
        t.pid.is_some_and(|p| self.pids.contains(&p))
            || t.comm.as_deref().is_some_and(|c| self.comms.contains(c))
    }
}

impl Filter {
    pub fn netns_matches(&self, netns: u32, name: Option<&str>) -> bool {
        (self.netns.is_empty() && self.netns_names.is_empty())
            || self.netns.contains(&netns)
            || name.is_some_and(|n| self.netns_names.contains(n))
    }

    /// Whether frames that crossed their device in `direction` are wanted.
    pub fn direction_matches(&self, direction: Direction) -> bool {
        self.direction.is_none_or(|d| d == direction)
    }

    /// Whether records of `family` are wanted.
    pub fn family_matches(&self, family: Family) -> bool {
        self.family.is_none_or(|f| f == family)
    }

    /// Whether a record about `ifname` (if it is about one) in namespace `netns` passes.
    pub fn matches(&self, ifname: Option<&str>, netns: u32, name: Option<&str>) -> bool {
        let if_ok = match ifname {
            Some(i) => self.interfaces.is_empty() || self.interfaces.contains(i),
            None => true,
        };
        if_ok && self.netns_matches(netns, name)
    }
}
