//! Why an ARP request carries the sender IP it does: a replay of arp_solicit()'s choice
//! (net/ipv4/arp.c) against a snapshot of the namespace's addresses and arp_announce sysctls,
//! driven by one rule table so every verdict names the kernel path that produced it.
//!
//! The model assumes the request came from arp_solicit() (not arping, gratuitous ARP or a
//! bonding/VRRP sender) and that the snapshot matches the moment of the request. Address scopes
//! and IFA_F_SECONDARY come from netlink when the facts were read live; facts without them
//! (written by hand) have secondaries inferred the way the kernel assigns them (a later address
//! of the same subnet and prefix on the same interface) and 127.0.0.0/8 taken as host scope.
//! It does not see AnyIP local routes, VRF tables, route_localnet, or local routes removed
//! with a downed interface. Whenever the kernel's path would have written a different sender
//! than the one observed, the verdict is `unexplained` rather than a guess.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::attribution::Origin;
use crate::event::ArpEvent;

/// The request explained: arp_solicit()'s inputs are its interface, target, observed sender
/// and trigger (the queued packet, `None` when the kernel solicited without one).
pub type Request = ArpEvent;

/// One IPv4 address as `ip -4 addr` lists it, in the kernel's order.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct IfAddr {
    pub ifname: String,
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
    /// The kernel's ifa_scope (0 universe, 253 link, 254 host) when read from netlink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u8>,
    /// IFA_F_SECONDARY as the kernel set it, when read from netlink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary: Option<bool>,
}

impl IfAddr {
    fn mask(&self) -> u32 {
        match self.prefix_len.min(32) {
            0 => 0,
            p => u32::MAX << (32 - p),
        }
    }

    /// The kernel's inet_ifa_match().
    fn contains(&self, a: Ipv4Addr) -> bool {
        (u32::from(a) ^ u32::from(self.addr)) & self.mask() == 0
    }

    fn subnet(&self) -> String {
        let net = Ipv4Addr::from(u32::from(self.addr) & self.mask());
        format!("{net}/{}", self.prefix_len.min(32))
    }

    /// 127/8 addresses get host scope (iproute2 and the kernel's ioctl path both do this), and
    /// inet_select_addr(.., RT_SCOPE_LINK) skips anything narrower than link scope.
    fn usable_at_link_scope(&self) -> bool {
        match self.scope {
            Some(scope) => scope <= RT_SCOPE_LINK,
            None => !self.addr.is_loopback(),
        }
    }
}

const RT_SCOPE_LINK: u8 = 253;

/// The namespace facts the kernel consults, captured when the request was seen.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct NsFacts {
    /// net.ipv4.conf.all.arp_announce
    pub announce_all: u8,
    /// net.ipv4.conf.<ifname>.arp_announce; a missing interface is taken as the default 0.
    #[serde(default)]
    pub announce_dev: BTreeMap<String, u8>,
    /// Every IPv4 address of every interface, in the order the kernel lists them.
    #[serde(default)]
    pub addrs: Vec<IfAddr>,
}

/// Which arp_solicit() path wrote the sender IP. The serialized codes are a stable contract.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Announce0LocalSource,
    Announce1OnlinkSource,
    SelectAnnounce2,
    SelectNoTrigger,
    SelectNonlocalSource,
    SelectOfflinkSource,
    SelectNoAddressOnDev,
    Unexplained,
}

impl Reason {
    pub const ALL: [Reason; 8] = [
        Reason::Announce0LocalSource,
        Reason::Announce1OnlinkSource,
        Reason::SelectAnnounce2,
        Reason::SelectNoTrigger,
        Reason::SelectNonlocalSource,
        Reason::SelectOfflinkSource,
        Reason::SelectNoAddressOnDev,
        Reason::Unexplained,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Reason::Announce0LocalSource => "announce0_local_source",
            Reason::Announce1OnlinkSource => "announce1_onlink_source",
            Reason::SelectAnnounce2 => "select_announce2",
            Reason::SelectNoTrigger => "select_no_trigger",
            Reason::SelectNonlocalSource => "select_nonlocal_source",
            Reason::SelectOfflinkSource => "select_offlink_source",
            Reason::SelectNoAddressOnDev => "select_no_address_on_dev",
            Reason::Unexplained => "unexplained",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// How to stop a foreign sender, now and across reboots.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Remedy {
    pub command: String,
    pub persistent: String,
    pub tradeoff: String,
}

impl Remedy {
    /// Makes the remedy runnable for a request seen in another network namespace: sysctls
    /// and addresses are per namespace, and /etc/sysctl.d only configures the host's.
    pub fn run_in_namespace(
        &mut self,
        inode: u32,
        name: Option<&str>,
        path: Option<&std::path::Path>,
    ) {
        let (prefix, what) = match (name, path) {
            (Some(n), _) => (format!("ip netns exec {n} "), format!("namespace {n}")),
            (None, Some(p)) => (
                format!("nsenter --net={} ", p.display()),
                format!("namespace {inode}"),
            ),
            (None, None) => (String::new(), format!("namespace {inode}")),
        };
        if prefix.is_empty() {
            self.command = format!("{} (inside network {what})", self.command);
        } else if !self.command.starts_with('<') {
            self.command = format!("{prefix}{}", self.command);
        }
        if self.command.contains("sysctl -w") {
            self.persistent = format!(
                "/etc/sysctl.d configures only the host's namespace: apply the setting where \
                 {what} is set up (after `ip netns add`, in the container runtime's or pod's \
                 sysctls, e.g. securityContext.sysctls)"
            );
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The sender IP lies in none of the egress interface's subnets.
    pub foreign_sender: bool,
    pub reason: Reason,
    pub explanation: String,
    pub consequence: Option<String>,
    pub remedy: Option<Remedy>,
}

/// One arp_solicit() path. `matches` holds when the kernel takes this path for the request's
/// facts AND the path writes the observed sender, so at most one non-`unexplained` rule matches.
pub struct Rule {
    pub reason: Reason,
    /// The kernel code this rule mirrors.
    pub kernel_fn: &'static str,
    pub matches: fn(&Ctx<'_>) -> bool,
    pub explanation: fn(&Ctx<'_>) -> String,
    pub consequence: fn(&Ctx<'_>) -> Option<String>,
    pub remedy: fn(&Ctx<'_>) -> Option<Remedy>,
}

/// The kernel's inputs and helper-function results for one request, computed once so the rule
/// predicates stay one-liners over the same facts.
pub struct Ctx<'a> {
    req: &'a Request,
    facts: &'a NsFacts,
    all: u8,
    dev_level: u8,
    dev_level_known: bool,
    effective: u8,
    /// The switch arm IN_DEV_ARP_ANNOUNCE() lands in: `default:` falls into case 0.
    case: u8,
    /// inet_addr_type_dev_table(saddr) == RTN_LOCAL, with the address that makes it local.
    source_local: Option<&'a IfAddr>,
    /// The egress address whose subnet holds both target and saddr (inet_addr_onlink()).
    onlink: Option<&'a IfAddr>,
    dev_addrs: Vec<&'a IfAddr>,
    /// inet_select_addr() on the egress device itself.
    selected: Option<&'a IfAddr>,
    selected_for_target: bool,
    /// What inet_select_addr() may borrow from other devices when the egress one has nothing.
    borrowed: Vec<&'a IfAddr>,
}

pub static RULES: &[Rule] = &[
    Rule {
        reason: Reason::Announce0LocalSource,
        kernel_fn: "arp_solicit() case 0 + inet_addr_type_dev_table()",
        matches: |c| c.case == 0 && c.source_local.is_some() && Some(c.sender()) == c.saddr(),
        explanation: explain_announce0,
        consequence: foreign_consequence,
        remedy: raise_announce,
    },
    Rule {
        reason: Reason::Announce1OnlinkSource,
        kernel_fn: "arp_solicit() case 1 + inet_addr_type_dev_table() + inet_addr_onlink()",
        matches: |c| {
            c.case == 1
                && c.source_local.is_some()
                && c.onlink.is_some()
                && Some(c.sender()) == c.saddr()
        },
        explanation: explain_announce1,
        consequence: foreign_consequence,
        remedy: raise_announce,
    },
    Rule {
        reason: Reason::SelectAnnounce2,
        kernel_fn: "arp_solicit() case 2 + inet_select_addr()",
        matches: |c| c.case == 2 && c.selected_is_sender(),
        explanation: explain_announce2,
        consequence: foreign_consequence,
        remedy: raise_announce,
    },
    Rule {
        reason: Reason::SelectNoTrigger,
        kernel_fn: "arp_solicit() with skb == NULL + inet_select_addr()",
        matches: |c| c.case < 2 && c.req.trigger.is_none() && c.selected_is_sender(),
        explanation: explain_no_trigger,
        consequence: foreign_consequence,
        remedy: raise_announce,
    },
    Rule {
        reason: Reason::SelectNonlocalSource,
        kernel_fn:
            "arp_solicit() case 0/1 + inet_addr_type_dev_table() != RTN_LOCAL + inet_select_addr()",
        matches: |c| {
            c.case < 2
                && c.req.trigger.is_some()
                && c.source_local.is_none()
                && c.selected_is_sender()
        },
        explanation: explain_nonlocal,
        consequence: foreign_consequence,
        remedy: raise_announce,
    },
    Rule {
        reason: Reason::SelectOfflinkSource,
        kernel_fn: "arp_solicit() case 1 + inet_addr_onlink() == 0 + inet_select_addr()",
        matches: |c| {
            c.case == 1 && c.source_local.is_some() && c.onlink.is_none() && c.selected_is_sender()
        },
        explanation: explain_offlink,
        consequence: foreign_consequence,
        remedy: raise_announce,
    },
    Rule {
        reason: Reason::SelectNoAddressOnDev,
        kernel_fn: "inet_select_addr() no_in_dev fallback + in_dev_select_addr() on other devices",
        matches: |c| {
            c.saddr_left_zero()
                && c.selected.is_none()
                && if c.borrowed.is_empty() {
                    c.sender() == Ipv4Addr::UNSPECIFIED
                } else {
                    c.borrowed.iter().any(|a| a.addr == c.sender())
                }
        },
        explanation: explain_no_address,
        consequence: foreign_consequence,
        remedy: raise_announce,
    },
    Rule {
        reason: Reason::Unexplained,
        kernel_fn: "none: no arp_solicit() path writes this sender for these facts",
        matches: |_| true,
        explanation: explain_unexplained,
        consequence: foreign_consequence,
        remedy: |_| None,
    },
];

/// net.ipv4.conf.{all,<ifname>}.arp_announce and the value the kernel uses, max(all, dev).
pub fn effective_announce(facts: &NsFacts, ifname: &str) -> (u8, u8, u8) {
    let all = facts.announce_all;
    let dev = facts.announce_dev.get(ifname).copied().unwrap_or(0);
    (all, dev, all.max(dev))
}

/// Explains `req.sender_ip` by the first rule of [`RULES`] that matches.
pub fn explain(req: &Request, facts: &NsFacts) -> Verdict {
    let c = Ctx::new(req, facts);
    let rule = c.rule();
    Verdict {
        foreign_sender: c.foreign(),
        reason: rule.reason,
        explanation: (rule.explanation)(&c),
        consequence: (rule.consequence)(&c),
        remedy: (rule.remedy)(&c),
    }
}

/// The sender IPs arp_solicit() would write for this request's facts, each with the path, read
/// back from [`RULES`] so predictions and verdicts cannot disagree. Several entries only when
/// the egress device has no address and the kernel borrows one in a device order the snapshot
/// cannot pin down.
pub fn kernel_senders(req: &Request, facts: &NsFacts) -> Vec<(Ipv4Addr, Reason)> {
    let c = Ctx::new(req, facts);
    let mut candidates: Vec<Ipv4Addr> = c.saddr().into_iter().collect();
    candidates.extend(c.selected.map(|a| a.addr));
    candidates.extend(c.borrowed.iter().map(|a| a.addr));
    candidates.push(Ipv4Addr::UNSPECIFIED);
    let mut out: Vec<(Ipv4Addr, Reason)> = Vec::new();
    for cand in candidates {
        if out.iter().any(|(a, _)| *a == cand) {
            continue;
        }
        let mut probe = req.clone();
        probe.sender_ip = cand;
        let reason = Ctx::new(&probe, facts).rule().reason;
        if reason != Reason::Unexplained {
            out.push((cand, reason));
        }
    }
    out
}

/// The kernel's inet_addr_type_dev_table() == RTN_LOCAL, minus VRF tables and AnyIP routes.
fn local_address(facts: &NsFacts, a: Ipv4Addr) -> Option<&IfAddr> {
    if a.is_unspecified() || a.is_broadcast() {
        return None;
    }
    facts.addrs.iter().find(|x| x.addr == a).or_else(|| {
        // fib_add_ifaddr() installs a loopback device's whole prefix as RTN_LOCAL.
        facts
            .addrs
            .iter()
            .find(|x| x.ifname == "lo" && x.contains(a))
    })
}

/// Addresses of `ifname` that the kernel keeps as primaries: __inet_insert_ifa() marks an
/// address secondary when an earlier one on the device has the same mask and subnet.
fn primaries<'a>(facts: &'a NsFacts, ifname: &str) -> Vec<&'a IfAddr> {
    let mut out: Vec<&IfAddr> = Vec::new();
    for a in facts.addrs.iter().filter(|a| a.ifname == ifname) {
        if let Some(secondary) = a.secondary {
            if !secondary {
                out.push(a);
            }
            continue;
        }
        if !out
            .iter()
            .any(|p| p.prefix_len == a.prefix_len && p.contains(a.addr))
        {
            out.push(a);
        }
    }
    out
}

fn is_foreign(facts: &NsFacts, ifname: &str, sender: Ipv4Addr) -> bool {
    // 0.0.0.0 claims no address (RFC 5227 probe style), so no peer can cache it wrongly.
    !sender.is_unspecified()
        && !facts
            .addrs
            .iter()
            .any(|a| a.ifname == ifname && a.contains(sender))
}

impl<'a> Ctx<'a> {
    fn new(req: &'a Request, facts: &'a NsFacts) -> Ctx<'a> {
        let dev = req.ifname.as_str();
        let (all, dev_level, effective) = effective_announce(facts, dev);
        let dev_addrs: Vec<&IfAddr> = facts.addrs.iter().filter(|a| a.ifname == dev).collect();
        let source_local = req
            .trigger
            .as_ref()
            .and_then(|t| local_address(facts, t.src));
        let onlink = req.trigger.as_ref().and_then(|t| {
            dev_addrs
                .iter()
                .copied()
                .find(|a| a.contains(req.target_ip) && a.contains(t.src))
        });
        let usable: Vec<&IfAddr> = primaries(facts, dev)
            .into_iter()
            .filter(|a| a.usable_at_link_scope())
            .collect();
        let for_target = usable.iter().copied().find(|a| a.contains(req.target_ip));
        let selected = for_target.or_else(|| usable.first().copied());
        let mut borrowed = Vec::new();
        if selected.is_none() {
            let mut seen: Vec<&str> = vec![dev];
            for a in &facts.addrs {
                if seen.contains(&a.ifname.as_str()) {
                    continue;
                }
                seen.push(&a.ifname);
                // in_dev_select_addr() takes each device's first usable primary.
                if let Some(p) = primaries(facts, &a.ifname)
                    .into_iter()
                    .find(|p| p.usable_at_link_scope())
                {
                    borrowed.push(p);
                }
            }
        }
        Ctx {
            req,
            facts,
            all,
            dev_level,
            dev_level_known: facts.announce_dev.contains_key(dev),
            effective,
            case: if effective > 2 { 0 } else { effective },
            source_local,
            onlink,
            dev_addrs,
            selected,
            selected_for_target: for_target.is_some(),
            borrowed,
        }
    }

    fn rule(&self) -> &'static Rule {
        RULES
            .iter()
            .find(|r| (r.matches)(self))
            .expect("the last rule matches everything")
    }

    fn dev(&self) -> &str {
        &self.req.ifname
    }

    fn sender(&self) -> Ipv4Addr {
        self.req.sender_ip
    }

    fn target(&self) -> Ipv4Addr {
        self.req.target_ip
    }

    fn saddr(&self) -> Option<Ipv4Addr> {
        self.req.trigger.as_ref().map(|t| t.src)
    }

    fn foreign(&self) -> bool {
        is_foreign(self.facts, self.dev(), self.sender())
    }

    fn selected_is_sender(&self) -> bool {
        self.selected.is_some_and(|a| a.addr == self.sender())
    }

    /// The `if (!saddr)` after the switch: no branch copied the packet's source.
    fn saddr_left_zero(&self) -> bool {
        match self.case {
            0 => self.source_local.is_none(),
            1 => self.source_local.is_none() || self.onlink.is_none(),
            _ => true,
        }
    }

    /// "arp_announce=0 (all=0, eth3=0)", the values as the user would look them up.
    fn levels(&self) -> String {
        let dev = if self.dev_level_known {
            format!("{}={}", self.dev(), self.dev_level)
        } else {
            format!("{} unset, taken as 0", self.dev())
        };
        let above = if self.effective > 2 {
            "; above 2 acts like 0"
        } else {
            ""
        };
        format!(
            "arp_announce={} (all={}, {dev}{above})",
            self.effective, self.all
        )
    }

    fn dev_subnets(&self) -> String {
        let mut nets: Vec<String> = Vec::new();
        for a in &self.dev_addrs {
            let n = a.subnet();
            if !nets.contains(&n) {
                nets.push(n);
            }
        }
        nets.join(", ")
    }

    /// "not on eth3's 198.51.100.0/24", or that eth3 has nothing.
    fn not_on_dev(&self) -> String {
        if self.dev_addrs.is_empty() {
            format!("while {} has no IPv4 address at all", self.dev())
        } else {
            format!("not on {}'s {}", self.dev(), self.dev_subnets())
        }
    }

    /// "eth5 (203.0.113.0/24)": the interface holding `a`, as precisely as the facts allow.
    fn home_of(&self, a: Ipv4Addr) -> String {
        let owner = local_address(self.facts, a).or_else(|| {
            self.facts
                .addrs
                .iter()
                .filter(|x| x.contains(a))
                .max_by_key(|x| x.prefix_len)
        });
        match owner {
            Some(x) => format!("{} ({})", x.ifname, x.subnet()),
            None => "no interface of this namespace".to_string(),
        }
    }

    fn who(&self) -> String {
        let Some(t) = &self.req.trigger else {
            return String::new();
        };
        let who = match (&t.comm, t.pid) {
            (Some(c), Some(p)) => Some(format!("{c}[{p}]")),
            _ => None,
        };
        let in_ifname = t.in_ifname.as_deref().unwrap_or("another interface");
        match (&t.origin, who) {
            (Origin::Local, Some(w)) => w,
            (Origin::Local, None) => "a local socket".to_string(),
            (Origin::Kernel, Some(w)) => format!("generated by the kernel, {w}"),
            (Origin::Kernel, None) => "generated by the kernel itself".to_string(),
            (Origin::Forwarded, _) => format!("forwarded, arrived on {in_ifname}"),
        }
    }

    /// "The packet that needed the ARP came from 203.0.113.10 (python3[4242])".
    fn trigger_sentence(&self) -> String {
        match self.saddr() {
            Some(s) => format!(
                "The packet that needed the ARP came from {s} ({})",
                self.who()
            ),
            None => "No queued packet was behind this request".to_string(),
        }
    }

    /// Which of the egress device's addresses inet_select_addr() settled on, and why that one.
    fn selection(&self) -> String {
        let Some(sel) = self.selected else {
            return format!("while {} has no usable address", self.dev());
        };
        if self.selected_for_target {
            format!(
                "its primary address in {}, the subnet of the target {}",
                sel.subnet(),
                self.target()
            )
        } else {
            format!(
                "its first primary address, since none of its subnets ({}) contains the target {}",
                self.dev_subnets(),
                self.target()
            )
        }
    }

    /// Why arp_solicit() reached inet_select_addr(), for the no-address explanation.
    fn select_cause(&self) -> String {
        match (self.case, self.saddr(), self.source_local) {
            (2, _, _) => format!("With {} Linux never copies the packet's source", self.levels()),
            (_, None, _) => {
                "No queued packet was behind this request, so there was no source to copy"
                    .to_string()
            }
            (_, Some(s), None) => format!(
                "The packet's source {s} ({}) is not an address of this host, so it could not be copied",
                self.who()
            ),
            (_, Some(s), Some(_)) => format!(
                "With {} the packet's source {s} ({}) is copied only when it shares a subnet of {} with the target, and {} has none",
                self.levels(),
                self.who(),
                self.dev(),
                self.dev()
            ),
        }
    }

    /// The facts with arp_announce settings applied, to replay the kernel under a remedy.
    fn with_settings(&self, settings: &[(String, u8)]) -> NsFacts {
        let mut f = self.facts.clone();
        for (conf, v) in settings {
            if conf == "all" {
                f.announce_all = *v;
            } else {
                f.announce_dev.insert(conf.clone(), *v);
            }
        }
        f
    }

    /// The sysctl writes that bring the effective level to at least `level` (and at most 2),
    /// with the level that results. Values above 2 act as 0 and max() keeps them in force, so
    /// `all` is lowered only then: lowering a meaningful `all` would weaken every interface, and
    /// a device already at or above `level` keeps its own value.
    fn settings_for(&self, level: u8) -> Option<(Vec<(String, u8)>, u8)> {
        let mut settings = Vec::new();
        let mut all = self.all;
        if all > 2 {
            all = level;
            settings.push(("all".to_string(), level));
        } else if all > level {
            return None;
        }
        let mut dev = self.dev_level;
        if dev > 2 || all.max(dev) < level {
            dev = level;
            settings.push((self.dev().to_string(), level));
        }
        (!settings.is_empty()).then_some((settings, all.max(dev)))
    }
}

fn explain_announce0(c: &Ctx<'_>) -> String {
    let s = c.sender();
    if c.foreign() {
        format!(
            "{} announces {s}, which lives on {}, {}. {}, and with {} Linux copies a packet's source into the request whenever that address is local to the host.",
            c.dev(),
            c.home_of(s),
            c.not_on_dev(),
            c.trigger_sentence(),
            c.levels()
        )
    } else {
        let net = c
            .dev_addrs
            .iter()
            .find(|a| a.contains(s))
            .map(|a| a.subnet())
            .unwrap_or_default();
        format!(
            "{} announces {s}, the source of the packet that needed the ARP ({}), which is local and inside {}'s {net}. With {} Linux copies a packet's source into the request whenever that address is local to the host.",
            c.dev(),
            c.who(),
            c.dev(),
            c.levels()
        )
    }
}

fn explain_announce1(c: &Ctx<'_>) -> String {
    let net = c.onlink.map(IfAddr::subnet).unwrap_or_default();
    format!(
        "{} announces {}, the source of the packet that needed the ARP ({}). With {} Linux copies a local source only when one of {}'s subnets contains both it and the target, and {net} contains both {} and {}.",
        c.dev(),
        c.sender(),
        c.who(),
        c.levels(),
        c.dev(),
        c.sender(),
        c.target()
    )
}

fn explain_announce2(c: &Ctx<'_>) -> String {
    let ignored = match c.saddr() {
        Some(s) if s != c.sender() => format!(", ignoring the packet's source {s} ({})", c.who()),
        _ => String::new(),
    };
    format!(
        "{} announces {}, {}. With {} Linux always lets inet_select_addr() pick a primary address of the outgoing interface{ignored}.",
        c.dev(),
        c.sender(),
        c.selection(),
        c.levels()
    )
}

fn explain_no_trigger(c: &Ctx<'_>) -> String {
    format!(
        "{} announces {}, {}. No queued packet was behind this request (typically the kernel re-confirming a stale neighbour entry), so even with {} there was no source to copy and inet_select_addr() chose.",
        c.dev(),
        c.sender(),
        c.selection(),
        c.levels()
    )
}

fn explain_nonlocal(c: &Ctx<'_>) -> String {
    let hint = match c.req.trigger.as_ref().map(|t| &t.origin) {
        Some(Origin::Forwarded) => "",
        _ => " (transparent or IP_FREEBIND sockets can send from such addresses)",
    };
    format!(
        "{} announces {}, {}. {}, which is not an address of this host{hint}, so with {} Linux could not copy it into the request and fell back to inet_select_addr().",
        c.dev(),
        c.sender(),
        c.selection(),
        c.trigger_sentence(),
        c.levels()
    )
}

fn explain_offlink(c: &Ctx<'_>) -> String {
    let s = c.saddr().unwrap_or(Ipv4Addr::UNSPECIFIED);
    format!(
        "{} announces {}, {}, rather than the packet's source. {}, which lives on {} but no subnet of {} contains both it and the target {}, and with {} Linux copies a local source only when one does, so it fell back to inet_select_addr().",
        c.dev(),
        c.sender(),
        c.selection(),
        c.trigger_sentence(),
        c.home_of(s),
        c.dev(),
        c.target(),
        c.levels()
    )
}

fn explain_no_address(c: &Ctx<'_>) -> String {
    let none = if c.dev_addrs.is_empty() {
        "has no IPv4 address"
    } else {
        "has no IPv4 address usable at link scope"
    };
    if c.sender().is_unspecified() {
        format!(
            "{} announces 0.0.0.0: it {none} and no other interface of the namespace has one inet_select_addr() could borrow. {}, and arp_announce cannot change that.",
            c.dev(),
            c.select_cause()
        )
    } else {
        format!(
            "{} {none}, so inet_select_addr() borrowed {} from {}: Linux then takes the first primary address it finds on the namespace's other interfaces. {}, and arp_announce cannot change that, since every level ends in inet_select_addr() when {} has no address of its own.",
            c.dev(),
            c.sender(),
            c.home_of(c.sender()),
            c.select_cause(),
            c.dev()
        )
    }
}

fn explain_unexplained(c: &Ctx<'_>) -> String {
    let predicted: Vec<String> = kernel_senders(c.req, c.facts)
        .iter()
        .map(|(a, _)| a.to_string())
        .collect();
    let predicted = match predicted.len() {
        0 => "no sender arp-trace can model".to_string(),
        1 => predicted[0].clone(),
        _ => format!("one of {}", predicted.join(", ")),
    };
    let packet = match c.saddr() {
        Some(s) => format!("a triggering packet from {s} ({})", c.who()),
        None => "no triggering packet".to_string(),
    };
    format!(
        "{} announces {}, but with {} and {packet}, arp_solicit() would have written {predicted}. Something outside its logic chose this address (an arptables/nftables arp mangle rule, a user-space sender such as arping, a local route or VRF the snapshot does not show, or addresses and sysctls that changed since the request), so arp-trace does not guess which.",
        c.dev(),
        c.sender(),
        c.levels()
    )
}

fn foreign_consequence(c: &Ctx<'_>) -> Option<String> {
    if !c.foreign() {
        return None;
    }
    let (s, dev) = (c.sender(), c.dev());
    Some(format!(
        "The target {} and other peers on {dev}'s link may cache {s} at {dev}'s MAC address, pairing the address with the wrong link. Hosts that bind an address to one interface complain: OpenBSD logs \"arp: attempt to overwrite entry for {s}\", FreeBSD logs \"arp: {s} is on <if> but got reply from <mac> on <if>\", and arpwatch reports flip flops.",
        c.target()
    ))
}

fn sysctl_key(conf: &str) -> String {
    // sysctl(8) and sysctl.d(5) read '/' in a key as a literal '.', as in VLAN names eth0.100.
    format!("net.ipv4.conf.{}.arp_announce", conf.replace('.', "/"))
}

/// The smallest arp_announce level whose replay (through [`RULES`]) gives this request a sender
/// inside the egress interface's subnets; an address change when no level can.
fn raise_announce(c: &Ctx<'_>) -> Option<Remedy> {
    if !c.foreign() {
        return None;
    }
    for level in [1u8, 2] {
        let Some((settings, resulting)) = c.settings_for(level) else {
            continue;
        };
        let facts = c.with_settings(&settings);
        let outcome = kernel_senders(c.req, &facts);
        let fixed = !outcome.is_empty()
            && outcome
                .iter()
                .all(|(a, _)| !a.is_unspecified() && !is_foreign(&facts, c.dev(), *a));
        if fixed {
            return Some(sysctl_remedy(c, level, resulting, &settings));
        }
    }
    Some(address_remedy(c))
}

fn sysctl_remedy(c: &Ctx<'_>, level: u8, resulting: u8, settings: &[(String, u8)]) -> Remedy {
    let dev = c.dev();
    let writes: Vec<String> = settings
        .iter()
        .map(|(conf, v)| format!("{}={v}", sysctl_key(conf)))
        .collect();
    let lines: Vec<String> = settings
        .iter()
        .map(|(conf, v)| format!("'{} = {v}'", sysctl_key(conf)))
        .collect();
    // One file per interface, so remedies for several interfaces do not overwrite each other.
    let file = format!("/etc/sysctl.d/90-arp-announce-{dev}.conf");
    let persistent = if lines.len() == 1 {
        format!("echo {} > {file}", lines[0])
    } else {
        format!("printf '%s\\n' {} > {file}", lines.join(" "))
    };
    let mut tradeoff = match (level, resulting) {
        (1, 1) => format!(
            "1 is the smallest change that stops this: {dev} still announces a packet's own source when one of {dev}'s subnets holds both it and the target (a secondary address, say) and its primary address otherwise, while 2 would also work and keeps secondary and VIP addresses out of every request (the usual LVS-DR/keepalived advice), at the cost of peers learning those addresses only from replies or gratuitous ARP."
        ),
        (1, _) => format!(
            "{dev}'s own arp_announce={} then takes effect, so {dev} always announces its primary address for the target's subnet and keeps secondary and VIP addresses out of requests, which peers then learn only from replies or gratuitous ARP.",
            c.dev_level
        ),
        _ => format!(
            "2 always announces {dev}'s primary address for the target's subnet, so secondary and VIP addresses never appear in requests and peers learn them only from replies or gratuitous ARP; 1 would not change this request's sender."
        ),
    };
    if c.all > 2 {
        tradeoff.push_str(&format!(
            " net.ipv4.conf.all.arp_announce={} acts like 0 and max(all, {dev}) keeps it in force over any per-interface value, so all itself comes down to {level}, which also raises every other interface to at least {level}.",
            c.all
        ));
    }
    Remedy {
        command: format!("sysctl -w {}", writes.join(" ")),
        persistent,
        tradeoff,
    }
}

fn address_remedy(c: &Ctx<'_>) -> Remedy {
    let (dev, target) = (c.dev(), c.target());
    let elsewhere = c
        .facts
        .addrs
        .iter()
        .find(|a| a.ifname != dev && a.contains(target))
        .map(|a| format!(" (here {}, {})", a.ifname, a.subnet()))
        .unwrap_or_default();
    Remedy {
        command: format!(
            "ip address add <unused address in {target}'s subnet>/<prefix length> dev {dev}"
        ),
        persistent: format!(
            "Add that address to {dev}'s persistent network configuration (systemd-networkd .network file, NetworkManager connection, netplan or /etc/network/interfaces)."
        ),
        tradeoff: format!(
            "arp_announce cannot help, because with no address on {dev} every level ends in inet_select_addr() borrowing one from another interface; give {dev} an address in {target}'s subnet, or route {target} via an interface that has one{elsewhere}."
        ),
    }
}

#[cfg(test)]
mod namespace_tests {
    use super::*;

    #[test]
    fn remedies_for_other_namespaces_say_where_to_run() {
        let base = Remedy {
            command: "sysctl -w net.ipv4.conf.eth3.arp_announce=1".into(),
            persistent: "echo x > /etc/sysctl.d/90-arp-announce-eth3.conf".into(),
            tradeoff: String::new(),
        };
        let mut r = base.clone();
        r.run_in_namespace(7, Some("srv"), None);
        assert_eq!(
            r.command,
            "ip netns exec srv sysctl -w net.ipv4.conf.eth3.arp_announce=1"
        );
        assert!(r.persistent.contains("namespace srv"), "{}", r.persistent);
        let mut r = base.clone();
        r.run_in_namespace(7, None, Some(std::path::Path::new("/proc/42/ns/net")));
        assert!(r
            .command
            .starts_with("nsenter --net=/proc/42/ns/net sysctl -w"));
        let mut r = base;
        r.run_in_namespace(7, None, None);
        assert!(
            r.command.ends_with("(inside network namespace 7)"),
            "{}",
            r.command
        );
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::attribution::Trigger;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    pub(crate) fn addr(ifname: &str, a: &str, prefix_len: u8) -> IfAddr {
        IfAddr {
            ifname: ifname.to_string(),
            addr: ip(a),
            prefix_len,
            scope: None,
            secondary: None,
        }
    }

    const EGRESS_PRIMARY: &str = "198.51.100.10";
    const EGRESS_SECONDARY: &str = "198.51.100.11";
    const OTHER_IF: &str = "203.0.113.10";
    const NONLOCAL: &str = "192.0.2.77";
    const TARGET: &str = "198.51.100.20";

    /// eth3 (egress) holds a primary and a secondary in the target's subnet, so the copy path
    /// (secondary) and the select path (primary) write different senders.
    fn facts(all: u8, dev: Option<u8>) -> NsFacts {
        NsFacts {
            announce_all: all,
            announce_dev: dev.map(|d| ("eth3".to_string(), d)).into_iter().collect(),
            addrs: vec![
                addr("lo", "127.0.0.1", 8),
                addr("eth3", EGRESS_PRIMARY, 24),
                addr("eth3", EGRESS_SECONDARY, 24),
                addr("eth5", OTHER_IF, 24),
            ],
        }
    }

    /// The seed host: eth3 198.51.100.10/24, eth5 203.0.113.10/24, arp_announce 0.
    pub(crate) fn seed_facts() -> NsFacts {
        NsFacts {
            announce_all: 0,
            announce_dev: [("eth3".to_string(), 0)].into(),
            addrs: vec![
                addr("eth3", "198.51.100.10", 24),
                addr("eth5", "203.0.113.10", 24),
            ],
        }
    }

    pub(crate) fn trigger(saddr: &str, origin: Origin) -> Trigger {
        let forwarded = origin == Origin::Forwarded;
        Trigger {
            src: ip(saddr),
            dst: ip(TARGET),
            proto: "udp".to_string(),
            sport: Some(41000),
            dport: Some(9),
            icmp_type: None,
            len: 41,
            mark: 0,
            origin,
            pid: (!forwarded).then_some(4242),
            comm: (!forwarded).then(|| "python3".to_string()),
            in_ifindex: forwarded.then_some(9),
            in_ifname: forwarded.then(|| "eth1".to_string()),
            drop_reason: None,
        }
    }

    fn forwarded(saddr: &str) -> Trigger {
        trigger(saddr, Origin::Forwarded)
    }

    pub(crate) fn request(
        ifname: &str,
        sender: &str,
        target: &str,
        trigger: Option<Trigger>,
    ) -> Request {
        let mut ev = crate::event::tests::request_event(ifname, sender, target);
        ev.trigger = trigger;
        ev
    }

    fn with_sender(req: &Request, sender: Ipv4Addr) -> Request {
        let mut r = req.clone();
        r.sender_ip = sender;
        r
    }

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Src {
        LocalOnDev,
        LocalElsewhere,
        NonLocal,
        NoTrigger,
    }

    fn src_trigger(src: Src) -> Option<Trigger> {
        match src {
            Src::LocalOnDev => Some(trigger(EGRESS_SECONDARY, Origin::Local)),
            Src::LocalElsewhere => Some(trigger(OTHER_IF, Origin::Local)),
            Src::NonLocal => Some(forwarded(NONLOCAL)),
            Src::NoTrigger => None,
        }
    }

    /// arp_solicit() restated directly from the kernel source, independent of RULES.
    fn kernel_expectation(level: u8, src: Src) -> (&'static str, Reason, bool) {
        match (level, src) {
            (0, Src::LocalOnDev) => (EGRESS_SECONDARY, Reason::Announce0LocalSource, false),
            (0, Src::LocalElsewhere) => (OTHER_IF, Reason::Announce0LocalSource, true),
            (1, Src::LocalOnDev) => (EGRESS_SECONDARY, Reason::Announce1OnlinkSource, false),
            (1, Src::LocalElsewhere) => (EGRESS_PRIMARY, Reason::SelectOfflinkSource, false),
            (0 | 1, Src::NonLocal) => (EGRESS_PRIMARY, Reason::SelectNonlocalSource, false),
            (0 | 1, Src::NoTrigger) => (EGRESS_PRIMARY, Reason::SelectNoTrigger, false),
            (2, _) => (EGRESS_PRIMARY, Reason::SelectAnnounce2, false),
            _ => unreachable!(),
        }
    }

    /// (all, dev, the switch arm the kernel takes): max wins, and 3+ falls into case 0.
    const PLACEMENTS: &[(u8, Option<u8>, u8)] = &[
        (0, None, 0),
        (0, Some(0), 0),
        (1, Some(0), 1),
        (0, Some(1), 1),
        (1, Some(1), 1),
        (2, Some(0), 2),
        (0, Some(2), 2),
        (2, Some(1), 2),
        (1, Some(2), 2),
        (3, Some(0), 0),
        (0, Some(4), 0),
        (3, Some(2), 0),
    ];

    const SOURCES: [Src; 4] = [
        Src::LocalOnDev,
        Src::LocalElsewhere,
        Src::NonLocal,
        Src::NoTrigger,
    ];

    #[test]
    fn explain_table_covers_every_reason_once() {
        for r in Reason::ALL {
            assert_eq!(
                RULES.iter().filter(|rule| rule.reason == r).count(),
                1,
                "{r}"
            );
        }
        assert_eq!(RULES.len(), Reason::ALL.len());
        assert_eq!(RULES.last().unwrap().reason, Reason::Unexplained);
        for rule in RULES {
            assert!(!rule.kernel_fn.trim().is_empty(), "{}", rule.reason);
        }
    }

    #[test]
    fn explain_reason_codes_serialize_as_documented() {
        for r in Reason::ALL {
            assert_eq!(
                serde_json::to_value(r).unwrap(),
                serde_json::Value::String(r.code().to_string())
            );
            let back: Reason = serde_json::from_str(&format!("\"{}\"", r.code())).unwrap();
            assert_eq!(back, r);
        }
    }

    #[test]
    fn explain_effective_announce_is_max() {
        for &(all, dev, _) in PLACEMENTS {
            let f = facts(all, dev);
            let d = dev.unwrap_or(0);
            assert_eq!(effective_announce(&f, "eth3"), (all, d, all.max(d)));
        }
        assert_eq!(effective_announce(&facts(1, Some(2)), "eth5"), (1, 0, 1));
    }

    #[test]
    fn explain_full_matrix() {
        let mut seen = Vec::new();
        for &(all, dev, level) in PLACEMENTS {
            for src in SOURCES {
                let f = facts(all, dev);
                let case = format!("all={all} dev={dev:?} (level {level}) src={src:?}");
                let (sender, reason, foreign) = kernel_expectation(level, src);
                let req = request("eth3", sender, TARGET, src_trigger(src));
                let v = explain(&req, &f);
                assert_eq!(v.reason, reason, "{case}: {}", v.explanation);
                assert_eq!(v.foreign_sender, foreign, "{case}");
                assert_eq!(v.consequence.is_some(), foreign, "{case}");
                assert_eq!(v.remedy.is_some(), foreign, "{case}");
                assert!(v.explanation.contains("eth3"), "{case}: {}", v.explanation);
                assert!(
                    v.explanation.contains(&format!("all={all}")),
                    "{case}: {}",
                    v.explanation
                );
                assert_eq!(
                    kernel_senders(&req, &f),
                    vec![(ip(sender), reason)],
                    "{case}"
                );
                seen.push(reason);

                // Every other address the host could have written contradicts the kernel.
                for other in [
                    EGRESS_PRIMARY,
                    EGRESS_SECONDARY,
                    OTHER_IF,
                    NONLOCAL,
                    "0.0.0.0",
                ] {
                    if other == sender {
                        continue;
                    }
                    let bad = request("eth3", other, TARGET, src_trigger(src));
                    let v = explain(&bad, &f);
                    assert_eq!(v.reason, Reason::Unexplained, "{case} observed {other}");
                    assert!(v.remedy.is_none(), "{case} observed {other}");
                    assert!(
                        v.explanation.contains(sender),
                        "{case} observed {other}: {}",
                        v.explanation
                    );
                    assert_eq!(v.foreign_sender, other == OTHER_IF || other == NONLOCAL);
                }
            }
        }
        for r in Reason::ALL {
            if r != Reason::SelectNoAddressOnDev && r != Reason::Unexplained {
                assert!(seen.contains(&r), "matrix never reaches {r}");
            }
        }
    }

    #[test]
    fn explain_at_most_one_kernel_path_matches() {
        for &(all, dev, _) in PLACEMENTS {
            for src in SOURCES {
                let f = facts(all, dev);
                for s in [
                    EGRESS_PRIMARY,
                    EGRESS_SECONDARY,
                    OTHER_IF,
                    NONLOCAL,
                    "0.0.0.0",
                ] {
                    for egress in ["eth3", "eth4"] {
                        let req = request(egress, s, TARGET, src_trigger(src));
                        let c = Ctx::new(&req, &f);
                        let hits: Vec<Reason> = RULES
                            .iter()
                            .filter(|r| r.reason != Reason::Unexplained && (r.matches)(&c))
                            .map(|r| r.reason)
                            .collect();
                        assert!(hits.len() <= 1, "{egress} {s} {src:?}: {hits:?}");
                    }
                }
            }
        }
    }

    fn seed() -> (Request, NsFacts) {
        let f = NsFacts {
            announce_all: 0,
            announce_dev: [("eth3".to_string(), 0), ("eth5".to_string(), 0)].into(),
            addrs: vec![
                addr("lo", "127.0.0.1", 8),
                addr("eth3", "198.51.100.10", 24),
                addr("eth5", "203.0.113.10", 24),
            ],
        };
        let req = request(
            "eth3",
            "203.0.113.10",
            "198.51.100.20",
            Some(trigger("203.0.113.10", Origin::Local)),
        );
        (req, f)
    }

    #[test]
    fn explain_seed_case() {
        let (req, f) = seed();
        let v = explain(&req, &f);
        assert_eq!(v.reason, Reason::Announce0LocalSource);
        assert!(v.foreign_sender);
        for needle in [
            "203.0.113.10",
            "eth5",
            "203.0.113.0/24",
            "eth3",
            "198.51.100.0/24",
            "arp_announce=0",
            "python3[4242]",
        ] {
            assert!(
                v.explanation.contains(needle),
                "{needle}: {}",
                v.explanation
            );
        }
        assert_eq!(
            v.explanation,
            "eth3 announces 203.0.113.10, which lives on eth5 (203.0.113.0/24), not on eth3's \
             198.51.100.0/24. The packet that needed the ARP came from 203.0.113.10 \
             (python3[4242]), and with arp_announce=0 (all=0, eth3=0) Linux copies a packet's \
             source into the request whenever that address is local to the host."
        );
        let consequence = v.consequence.unwrap();
        assert!(consequence.contains("attempt to overwrite entry"));
        assert!(consequence.contains("but got reply from"));
        assert!(consequence.contains("arpwatch"));
        let remedy = v.remedy.unwrap();
        assert!(remedy.command.contains("net.ipv4.conf.eth3.arp_announce"));
        assert_eq!(
            remedy.command,
            "sysctl -w net.ipv4.conf.eth3.arp_announce=1"
        );
        assert!(remedy.persistent.contains("/etc/sysctl.d/"));
        assert!(remedy
            .persistent
            .contains("'net.ipv4.conf.eth3.arp_announce = 1'"));
        assert!(remedy.tradeoff.contains('2'), "{}", remedy.tradeoff);
    }

    /// Replays a remedy's sysctl writes and checks the kernel now writes a non-foreign sender.
    fn apply(f: &NsFacts, command: &str) -> NsFacts {
        let mut f = f.clone();
        for w in command.trim_start_matches("sysctl -w ").split(' ') {
            let (key, v) = w.split_once('=').unwrap();
            let conf = key
                .strip_prefix("net.ipv4.conf.")
                .and_then(|k| k.strip_suffix(".arp_announce"))
                .unwrap()
                .replace('/', ".");
            let v: u8 = v.parse().unwrap();
            if conf == "all" {
                f.announce_all = v;
            } else {
                f.announce_dev.insert(conf, v);
            }
        }
        f
    }

    #[test]
    fn explain_remedy_changes_the_outcome() {
        let (req, f) = seed();
        for (all, dev) in [(0, 0), (3, 0), (0, 3), (4, 7), (3, 2)] {
            let mut f = f.clone();
            f.announce_all = all;
            f.announce_dev.insert("eth3".to_string(), dev);
            let v = explain(&req, &f);
            assert_eq!(
                v.reason,
                Reason::Announce0LocalSource,
                "all={all} dev={dev}"
            );
            let remedy = v.remedy.unwrap();
            assert_eq!(
                remedy.command.contains("conf.all."),
                all > 2,
                "{}",
                remedy.command
            );
            let fixed = apply(&f, &remedy.command);
            let after = kernel_senders(&req, &fixed);
            // eth3's own 2 survives when only `all` had to come down.
            let expected = if dev == 2 {
                Reason::SelectAnnounce2
            } else {
                Reason::SelectOfflinkSource
            };
            assert_eq!(
                after,
                vec![(ip("198.51.100.10"), expected)],
                "all={all} dev={dev}: {}",
                remedy.command
            );
            if dev == 2 {
                assert_eq!(remedy.command, "sysctl -w net.ipv4.conf.all.arp_announce=1");
            }
            let v = explain(&with_sender(&req, after[0].0), &fixed);
            assert!(!v.foreign_sender);
            assert!(v.remedy.is_none());
        }
    }

    #[test]
    fn explain_remedy_key_for_dotted_interface() {
        let (mut req, mut f) = seed();
        for a in &mut f.addrs {
            if a.ifname == "eth3" {
                a.ifname = "eth3.100".to_string();
            }
        }
        req.ifname = "eth3.100".to_string();
        let remedy = explain(&req, &f).remedy.unwrap();
        assert_eq!(
            remedy.command,
            "sysctl -w net.ipv4.conf.eth3/100.arp_announce=1"
        );
        assert_eq!(
            apply(&f, &remedy.command).announce_dev.get("eth3.100"),
            Some(&1)
        );
    }

    fn no_address_facts(all: u8) -> NsFacts {
        NsFacts {
            announce_all: all,
            announce_dev: BTreeMap::new(),
            addrs: vec![
                addr("lo", "127.0.0.1", 8),
                addr("eth3", "198.51.100.10", 24),
                addr("eth5", "203.0.113.10", 24),
            ],
        }
    }

    #[test]
    fn explain_no_address_on_dev() {
        for level in [0, 1, 2] {
            let f = no_address_facts(level);
            for (sender, t) in [
                ("203.0.113.10", None),
                ("198.51.100.10", Some(forwarded(NONLOCAL))),
            ] {
                let req = request("eth4", sender, "192.0.2.20", t);
                let v = explain(&req, &f);
                assert_eq!(v.reason, Reason::SelectNoAddressOnDev, "level {level}");
                assert!(v.foreign_sender);
                assert!(v.explanation.contains("eth4 has no IPv4 address"));
                assert!(v.explanation.contains("arp_announce cannot"));
                let remedy = v.remedy.unwrap();
                assert!(remedy.command.starts_with("ip address add"));
                assert!(remedy.command.ends_with("dev eth4"));
                assert!(remedy.tradeoff.contains("arp_announce cannot help"));
            }
            // The borrowed address is a primary of another device, never its loopback one.
            let req = request("eth4", "127.0.0.1", "192.0.2.20", None);
            assert_eq!(explain(&req, &f).reason, Reason::Unexplained);
        }

        // Copying a local source still happens, but no level can fix it without an address.
        let f = no_address_facts(0);
        let req = request(
            "eth4",
            "203.0.113.10",
            "192.0.2.20",
            Some(trigger("203.0.113.10", Origin::Local)),
        );
        let v = explain(&req, &f);
        assert_eq!(v.reason, Reason::Announce0LocalSource);
        assert!(v.explanation.contains("eth4 has no IPv4 address at all"));
        assert!(v.remedy.unwrap().command.starts_with("ip address add"));

        // Nothing to borrow anywhere: the request goes out with 0.0.0.0, which is not foreign.
        let f = NsFacts {
            addrs: vec![addr("lo", "127.0.0.1", 8)],
            ..NsFacts::default()
        };
        let req = request("eth4", "0.0.0.0", "192.0.2.20", None);
        let v = explain(&req, &f);
        assert_eq!(v.reason, Reason::SelectNoAddressOnDev);
        assert!(!v.foreign_sender);
        assert!(v.remedy.is_none());
    }

    #[test]
    fn explain_select_prefers_target_subnet_and_skips_secondaries() {
        let f = NsFacts {
            announce_all: 2,
            announce_dev: BTreeMap::new(),
            addrs: vec![
                addr("eth3", "192.0.2.1", 24),
                addr("eth3", "192.0.2.2", 24),
                addr("eth3", "198.51.100.10", 24),
            ],
        };
        let v = explain(&request("eth3", "198.51.100.10", TARGET, None), &f);
        assert_eq!(v.reason, Reason::SelectAnnounce2);
        assert!(
            v.explanation.contains("198.51.100.0/24"),
            "{}",
            v.explanation
        );
        let v = explain(&request("eth3", "192.0.2.1", "203.0.113.5", None), &f);
        assert_eq!(v.reason, Reason::SelectAnnounce2);
        assert!(v.explanation.contains("first primary"), "{}", v.explanation);
        let v = explain(&request("eth3", "192.0.2.2", "203.0.113.5", None), &f);
        assert_eq!(v.reason, Reason::Unexplained);
    }

    #[test]
    fn explain_uses_kernel_flags_when_netlink_gave_them() {
        // 198.51.100.11 listed first but flagged secondary by the kernel: inference from
        // order alone would have picked it.
        let mut f = facts(2, None);
        f.addrs = vec![
            IfAddr {
                secondary: Some(true),
                scope: Some(0),
                ..addr("eth3", EGRESS_SECONDARY, 24)
            },
            IfAddr {
                secondary: Some(false),
                scope: Some(0),
                ..addr("eth3", EGRESS_PRIMARY, 24)
            },
        ];
        let v = explain(&request("eth3", EGRESS_PRIMARY, TARGET, None), &f);
        assert_eq!(v.reason, Reason::SelectAnnounce2, "{}", v.explanation);
        let v = explain(&request("eth3", EGRESS_SECONDARY, TARGET, None), &f);
        assert_eq!(v.reason, Reason::Unexplained);
        // A host-scope address (as `ip addr add ... scope host` makes) is never selected.
        f.addrs[1].scope = Some(254);
        let v = explain(&request("eth3", EGRESS_PRIMARY, TARGET, None), &f);
        assert_eq!(v.reason, Reason::Unexplained);
    }

    #[test]
    fn explain_loopback_prefix_is_local() {
        // A VIP on lo as /32 inside eth3's subnet: the LVS-DR case where level 1 still copies it.
        let mut f = facts(1, None);
        f.addrs.push(addr("lo", "198.51.100.100", 32));
        let req = request(
            "eth3",
            "198.51.100.100",
            TARGET,
            Some(trigger("198.51.100.100", Origin::Local)),
        );
        assert_eq!(explain(&req, &f).reason, Reason::Announce1OnlinkSource);
        f.announce_all = 2;
        let v = explain(&with_sender(&req, ip(EGRESS_PRIMARY)), &f);
        assert_eq!(v.reason, Reason::SelectAnnounce2);
    }

    #[test]
    fn explain_verdict_json_field_names() {
        let (req, f) = seed();
        let v = explain(&req, &f);
        let json = serde_json::to_value(&v).unwrap();
        let obj = json.as_object().unwrap();
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "consequence",
                "explanation",
                "foreign_sender",
                "reason",
                "remedy"
            ]
        );
        assert_eq!(obj["reason"], "announce0_local_source");
        assert_eq!(obj["foreign_sender"], true);
        let mut remedy: Vec<&str> = obj["remedy"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        remedy.sort_unstable();
        assert_eq!(remedy, ["command", "persistent", "tradeoff"]);
        let back: Verdict = serde_json::from_value(json).unwrap();
        assert_eq!(back, v);

        let ok = explain(&request("eth3", "198.51.100.10", "198.51.100.20", None), &f);
        let json = serde_json::to_value(&ok).unwrap();
        assert!(json["consequence"].is_null());
        assert!(json["remedy"].is_null());
    }

    #[test]
    fn explain_replays_from_the_event_alone() {
        let (mut req, f) = seed();
        for t in [None, Some(forwarded(NONLOCAL)), req.trigger.clone()] {
            req.trigger = t;
            let facts_json = serde_json::to_string(&f).unwrap();
            assert_eq!(serde_json::from_str::<NsFacts>(&facts_json).unwrap(), f);
            let mut ev = req.clone();
            ev.egress = None; // internal; its values travel as `facts`
            ev.verdict = Some(explain(&req, &f));
            ev.facts = Some(crate::event::EventFacts::from_ns(&f, &req.ifname));
            let line = serde_json::to_string(&ev).unwrap();
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(
                v["arp_announce"],
                serde_json::json!({"all":0,"dev":0,"effective":0})
            );
            assert_eq!(v["addrs"], serde_json::json!(["198.51.100.10/24"]));
            assert!(
                v["reason"].is_string() && v["foreign_sender"].is_boolean(),
                "{v}"
            );
            let back: crate::event::ArpEvent = serde_json::from_str(&line).unwrap();
            assert_eq!(back, ev);
            let replayed = explain(&back, &back.facts.as_ref().unwrap().to_ns(&back.ifname));
            assert_eq!(Some(replayed), ev.verdict);
        }
    }
}
