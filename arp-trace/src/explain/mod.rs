//! Why an ARP request carries the sender IP it does: a replay of arp_solicit()'s choice
//! (net/ipv4/arp.c) against the namespace's addresses and arp_announce sysctls, driven by one
//! rule table ([`rules::RULES`]) so every verdict names the kernel path that produced it.
//!
//! The model assumes the request came from arp_solicit() (not arping, gratuitous ARP or a
//! bonding/VRRP sender) and that the facts match the moment of the request. Address scopes
//! and IFA_F_SECONDARY come from netlink when the facts were read live; facts without them
//! (written by hand) have secondaries inferred the way the kernel assigns them (a later address
//! of the same subnet and prefix on the same interface) and 127.0.0.0/8 taken as host scope.
//! It does not see AnyIP local routes, VRF tables, route_localnet, or local routes removed
//! with a downed interface. Whenever the kernel's path would have written a different sender
//! than the one observed, the verdict is `unexplained` rather than a guess.

mod ctx;
pub mod egress;
pub mod remedy;
pub mod rules;
pub mod shell;
mod text;

#[cfg(test)]
pub(crate) mod tests;

use arp_trace_model::{FactsChange, NsFacts};

pub use ctx::{foreign_to, is_foreign, Rule};
pub use remedy::run_in_namespace;
pub use rules::{explain, kernel_senders, RULES};

/// Where a request's namespace facts come from (the namespace watchers, live). `Err` carries
/// a one-line cause.
pub trait FactsSource {
    fn facts(&mut self, netns: u32, ifname: &str) -> Result<NsFacts<'static>, String>;
    /// Like `facts`, but read now from the namespace rather than from a cache: for when the
    /// kernel's own view of the egress device disagrees with the cached one.
    fn facts_fresh(&mut self, netns: u32, ifname: &str) -> Result<NsFacts<'static>, String> {
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
