//! Why an ARP request carries the sender IP it does (and, in [`ndisc`], why an IPv6
//! neighbour solicitation carries its source): a replay of arp_solicit()'s choice
//! (net/ipv4/arp.c) against the namespace's addresses and sysctls, driven by one rule table
//! ([`rules::RULES`]) so every verdict names the kernel path that produced it. Requests
//! arp_solicit() did not build are told apart first: a process's packet-socket frame
//! (`userspace`) and the kernel's gratuitous announcements (`kernel_announce`).
//!
//! The helpers follow the kernel's: local means local in the egress device's L3 table (its
//! VRF's, else the local table: inet_addr_type_dev_table()); subnets are matched on a peer
//! address's peer (inet_ifa_match()); route_localnet lets host-scope addresses of the device
//! be chosen; a borrowed address is the VRF device's, else the first primary of universe or
//! site scope on a device of the same L3 domain in the kernel's device-list order, which the
//! BPF program reads at transmit. Address scopes and IFA_F_SECONDARY come from the kernel
//! when the facts were read live; facts without them (written by hand) have secondaries
//! inferred the way the kernel assigns them (a later address of the same subnet and prefix on
//! the same interface) and 127.0.0.0/8 taken as host scope. Local routes stay while their
//! interface is down (fib_add_ifaddr() added them regardless of IFF_UP), so a downed
//! interface's addresses still count as local. AnyIP local routes are not modelled. Whenever
//! the kernel's path would have written a different sender than the one observed, the verdict
//! is `unexplained` rather than a guess.

mod ctx;
pub mod egress;
pub mod ndisc;
pub mod remedy;
pub mod rules;
pub mod shell;
mod text;

#[cfg(test)]
mod kernel_cases;
#[cfg(test)]
pub(crate) mod tests;

use std::sync::Arc;

use arp_trace_model::{FactsChange, NsFacts};

pub use ctx::{foreign_to, is_foreign, Rule};
pub use ndisc::{explain_ndisc, explain_silent_failure, NDISC_RULES};
pub use remedy::run_in_namespace;
pub use rules::{explain, kernel_senders, RULES};

/// A namespace's facts as a source hands them out: shared with its cache, since every request
/// asks and copying them each time was a measurable share of a storm's CPU.
pub type SharedFacts = Arc<NsFacts<'static>>;

/// Where a request's namespace facts come from (the namespace watchers, live). `Err` carries
/// a one-line cause.
pub trait FactsSource {
    fn facts(&mut self, netns: u32, ifname: &str) -> Result<SharedFacts, String>;
    /// Like `facts`, but read now from the namespace rather than from a cache: for when the
    /// kernel's own view of the egress device disagrees with the cached one.
    fn facts_fresh(&mut self, netns: u32, ifname: &str) -> Result<SharedFacts, String> {
        self.facts(netns, ifname)
    }
    /// Changes observed since the last call, oldest first.
    fn changes(&mut self) -> Vec<FactsChange<'static>> {
        Vec::new()
    }
    /// Changes that could not be reported (the queue was full), so far.
    fn changes_dropped(&self) -> u64 {
        0
    }
}
