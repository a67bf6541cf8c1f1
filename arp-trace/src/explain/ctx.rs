//! [`Ctx`]: the kernel's inputs and helper results for one request (what
//! inet_addr_type_dev_table(), inet_addr_onlink() and inet_select_addr() would find), computed
//! once so every rule's predicate is a one-liner over the same facts; and [`Rule`], the shape
//! of one row of the table. A context carries the table it is judged by, so the words and the
//! remedies can replay the kernel under other facts without reaching back for it.

use std::net::Ipv4Addr;

use arp_trace_model::{ArpEvent, Cidr, IfAddr, NsFacts, Reason, Remedy, RT_SCOPE_LINK};

/// One arp_solicit() path. `matches` holds when the kernel takes this path for the request's
/// facts AND the path writes the observed sender, so at most one non-`unexplained` rule matches.
pub struct Rule {
    pub reason: Reason,
    /// The kernel code this rule mirrors.
    pub kernel_fn: &'static str,
    pub matches: fn(&Ctx<'_>) -> bool,
    pub explanation: fn(&Ctx<'_>) -> String,
    pub consequence: fn(&Ctx<'_>) -> Option<String>,
    pub remedy: fn(&Ctx<'_>) -> Option<Remedy<'static>>,
}

/// The kernel's inputs and helper-function results for one request, computed once so the rule
/// predicates stay one-liners over the same facts.
pub struct Ctx<'a> {
    /// The table this request is judged by.
    pub(super) rules: &'static [Rule],
    pub(super) req: &'a ArpEvent<'a>,
    pub(super) facts: &'a NsFacts<'a>,
    pub(super) all: u8,
    pub(super) dev_level: u8,
    pub(super) dev_level_known: bool,
    pub(super) effective: u8,
    /// The switch arm IN_DEV_ARP_ANNOUNCE() lands in: `default:` falls into case 0.
    pub(super) case: u8,
    /// inet_addr_type_dev_table(saddr) == RTN_LOCAL, with the address that makes it local.
    pub(super) source_local: Option<&'a IfAddr<'a>>,
    /// The egress address whose subnet holds both target and saddr (inet_addr_onlink()).
    pub(super) onlink: Option<&'a IfAddr<'a>>,
    pub(super) dev_addrs: Vec<&'a IfAddr<'a>>,
    /// inet_select_addr() on the egress device itself.
    pub(super) selected: Option<&'a IfAddr<'a>>,
    pub(super) selected_for_target: bool,
    /// What inet_select_addr() may borrow from other devices when the egress one has nothing.
    pub(super) borrowed: Vec<&'a IfAddr<'a>>,
}

/// The sender IPs arp_solicit() would write for this request's facts, each with the path, read
/// back from the rule table so predictions and verdicts cannot disagree. Several entries only when
/// the egress device has no address and the kernel borrows one in a device order the snapshot
/// cannot pin down.
pub fn senders(
    rules: &'static [Rule],
    req: &ArpEvent<'_>,
    facts: &NsFacts<'_>,
) -> Vec<(Ipv4Addr, Reason)> {
    let c = Ctx::new(rules, req, facts);
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
        let reason = Ctx::new(rules, &probe, facts).rule().reason;
        if reason != Reason::Unexplained {
            out.push((cand, reason));
        }
    }
    out
}

/// The kernel's inet_addr_type_dev_table() == RTN_LOCAL, minus VRF tables and AnyIP routes.
pub(super) fn local_address<'a>(facts: &'a NsFacts<'a>, a: Ipv4Addr) -> Option<&'a IfAddr<'a>> {
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
pub(super) fn primaries<'a>(facts: &'a NsFacts<'a>, ifname: &str) -> Vec<&'a IfAddr<'a>> {
    let mut out: Vec<&IfAddr<'_>> = Vec::new();
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

/// Whether `sender` is in none of `ifname`'s subnets.
pub fn is_foreign(facts: &NsFacts<'_>, ifname: &str, sender: Ipv4Addr) -> bool {
    foreign_to(sender, facts.addrs_of(ifname).map(IfAddr::cidr))
}

/// Whether `sender` is in none of these subnets (an interface's): a peer on that link could
/// then cache it at the wrong place. 0.0.0.0 claims no address (RFC 5227 probe style), so no
/// peer can cache it wrongly.
pub fn foreign_to(sender: Ipv4Addr, subnets: impl IntoIterator<Item = Cidr>) -> bool {
    !sender.is_unspecified() && !subnets.into_iter().any(|c| c.contains(sender))
}

/// 127/8 addresses get host scope (iproute2 and the kernel's ioctl path both do this), and
/// inet_select_addr(.., RT_SCOPE_LINK) skips anything narrower than link scope.
fn usable_at_link_scope(a: &IfAddr<'_>) -> bool {
    match a.scope {
        Some(scope) => scope <= RT_SCOPE_LINK,
        None => !a.addr.is_loopback(),
    }
}

impl<'a> Ctx<'a> {
    pub(super) fn new(
        rules: &'static [Rule],
        req: &'a ArpEvent<'a>,
        facts: &'a NsFacts<'a>,
    ) -> Ctx<'a> {
        let dev: &str = &req.ifname;
        let (all, dev_level, effective) = facts.announce(dev);
        let dev_addrs: Vec<&IfAddr<'_>> = facts.addrs.iter().filter(|a| a.ifname == dev).collect();
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
        let usable: Vec<&IfAddr<'_>> = primaries(facts, dev)
            .into_iter()
            .filter(|a| usable_at_link_scope(a))
            .collect();
        let for_target = usable.iter().copied().find(|a| a.contains(req.target_ip));
        let selected = for_target.or_else(|| usable.first().copied());
        let mut borrowed = Vec::new();
        if selected.is_none() {
            let mut seen: Vec<&str> = vec![dev];
            for a in &facts.addrs {
                if seen.contains(&&*a.ifname) {
                    continue;
                }
                seen.push(&a.ifname);
                // in_dev_select_addr() takes each device's first usable primary.
                if let Some(p) = primaries(facts, &a.ifname)
                    .into_iter()
                    .find(|p| usable_at_link_scope(p))
                {
                    borrowed.push(p);
                }
            }
        }
        Ctx {
            rules,
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

    pub(super) fn rule(&self) -> &'static Rule {
        self.rules
            .iter()
            .find(|r| (r.matches)(self))
            .expect("the last rule matches everything")
    }

    pub(super) fn dev(&self) -> &str {
        &self.req.ifname
    }

    pub(super) fn sender(&self) -> Ipv4Addr {
        self.req.sender_ip
    }

    pub(super) fn target(&self) -> Ipv4Addr {
        self.req.target_ip
    }

    pub(super) fn saddr(&self) -> Option<Ipv4Addr> {
        self.req.trigger.as_ref().map(|t| t.src)
    }

    pub(super) fn foreign(&self) -> bool {
        is_foreign(self.facts, self.dev(), self.sender())
    }

    pub(super) fn selected_is_sender(&self) -> bool {
        self.selected.is_some_and(|a| a.addr == self.sender())
    }

    /// The `if (!saddr)` after the switch: no branch copied the packet's source.
    pub(super) fn saddr_left_zero(&self) -> bool {
        match self.case {
            0 => self.source_local.is_none(),
            1 => self.source_local.is_none() || self.onlink.is_none(),
            _ => true,
        }
    }

    /// The facts with arp_announce settings applied, to replay the kernel under a remedy.
    pub(super) fn with_settings(&self, settings: &[(String, u8)]) -> NsFacts<'a> {
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
    pub(super) fn settings_for(&self, level: u8) -> Option<(Vec<(String, u8)>, u8)> {
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

impl Ctx<'_> {
    /// What arp_solicit() would write for this request under `facts` (a remedy's settings).
    pub(super) fn senders_under(&self, facts: &NsFacts<'_>) -> Vec<(Ipv4Addr, Reason)> {
        senders(self.rules, self.req, facts)
    }
}
