//! [`Ctx`]: the kernel's inputs and helper results for one request (what
//! inet_addr_type_dev_table(), inet_addr_onlink() and inet_select_addr() would find), computed
//! once so every rule's predicate is a one-liner over the same facts; and [`Rule`], the shape
//! of one row of the table. A context carries the table it is judged by, so the words and the
//! remedies can replay the kernel under other facts without reaching back for it.

use std::net::Ipv4Addr;

use arp_trace_model::{
    ArpEvent, Cidr, IfAddr, NsFacts, Origin, Reason, Remedy, RT_SCOPE_HOST, RT_SCOPE_LINK,
};

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

/// An address inet_select_addr() may borrow from another device (in_dev_select_addr()).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Borrow<'a> {
    pub ifname: &'a str,
    pub addr: Ipv4Addr,
}

/// The kernel's inputs and helper-function results for one request, computed once so the rule
/// predicates stay one-liners over the same facts.
pub struct Ctx<'a> {
    /// The table this request is judged by.
    pub(super) rules: &'static [Rule],
    pub(super) req: &'a ArpEvent<'a>,
    pub(super) facts: &'a NsFacts<'a>,
    pub(super) all: i32,
    pub(super) dev_level: i32,
    pub(super) dev_level_known: bool,
    pub(super) effective: i32,
    /// The switch arm IN_DEV_ARP_ANNOUNCE() lands in: `default:` (above 2, below 0) falls into
    /// case 0.
    pub(super) case: u8,
    /// The VRF the egress device belongs to (l3mdev_master_ifindex()), if any.
    pub(super) vrf: Option<&'a str>,
    /// A frame the kernel announced on its own: a gratuitous request no socket wrote.
    pub(super) announcement: bool,
    /// A frame a process wrote through a packet socket.
    pub(super) packet_socket: bool,
    /// inet_addr_type_dev_table(saddr) == RTN_LOCAL, with the address that makes it local.
    pub(super) source_local: Option<&'a IfAddr<'a>>,
    /// The egress address whose subnet holds both target and saddr (inet_addr_onlink()).
    pub(super) onlink: Option<&'a IfAddr<'a>>,
    pub(super) dev_addrs: Addrs<'a>,
    /// IN_DEV_ROUTE_LOCALNET(): host-scope addresses of the device count as link scope.
    pub(super) localnet: bool,
    /// inet_select_addr() on the egress device itself.
    pub(super) selected: Option<&'a IfAddr<'a>>,
    pub(super) selected_for_target: bool,
    /// What inet_select_addr() may borrow from other devices when the egress one has nothing:
    /// the kernel's one choice when `borrow_known`, else every candidate the facts allow.
    pub(super) borrowed: Vec<Borrow<'a>>,
    pub(super) borrow_known: bool,
    /// The borrow came from the VRF device itself, which the kernel tries first.
    pub(super) borrowed_from_master: bool,
}

/// The sender IPs arp_solicit() would write for this request's facts, each with the path, read
/// back from the rule table so predictions and verdicts cannot disagree. Several entries only when
/// the egress device has no address and the kernel borrows one in a device order the facts do
/// not pin down.
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

/// The kernel's inet_addr_type_dev_table(dev, a) == RTN_LOCAL: a lookup in the egress device's
/// L3 table (its VRF's, else the local table), where fib_add_ifaddr() put a local route for
/// every address of the devices in that domain. AnyIP routes are not modelled.
pub(super) fn local_address<'a>(
    facts: &'a NsFacts<'a>,
    dev: &str,
    a: Ipv4Addr,
) -> Option<&'a IfAddr<'a>> {
    // __inet_dev_addr_type(): zeronet and limited broadcast are RTN_BROADCAST, multicast
    // RTN_MULTICAST, before any table is read.
    if a.octets()[0] == 0 || a.is_broadcast() || a.is_multicast() {
        return None;
    }
    let table = facts.vrf_table_of(dev);
    let in_domain = |x: &&IfAddr<'_>| facts.vrf_table_of(&x.ifname) == table;
    facts
        .addrs
        .iter()
        .filter(in_domain)
        .find(|x| x.addr == a)
        .or_else(|| {
            // fib_add_ifaddr() installs a loopback device's whole prefix as RTN_LOCAL, in the
            // local table (lo is in no VRF).
            facts
                .addrs
                .iter()
                .filter(in_domain)
                .find(|x| x.ifname == "lo" && x.contains(a))
        })
}

/// Some of a namespace's addresses, in its order: a device has a handful, and these lists are
/// made for every request explained, so they live on the stack.
pub(super) type Addrs<'a> = smallvec::SmallVec<[&'a IfAddr<'a>; 8]>;

/// Addresses of `ifname` that the kernel keeps as primaries: __inet_insert_ifa() marks an
/// address secondary when an earlier one on the device has the same mask and its
/// `ifa_address` in the new one's subnet.
pub(super) fn primaries<'a>(facts: &'a NsFacts<'a>, ifname: &str) -> Addrs<'a> {
    let mut out: Addrs<'_> = Addrs::new();
    for a in facts.addrs.iter().filter(|a| a.ifname == ifname) {
        if let Some(secondary) = a.secondary {
            if !secondary {
                out.push(a);
            }
            continue;
        }
        if !out
            .iter()
            .any(|p| p.prefix_len == a.prefix_len && a.contains(p.peer.unwrap_or(p.addr)))
        {
            out.push(a);
        }
    }
    out
}

/// The scope an address has: netlink's, or for facts without one, host for 127/8 (what
/// iproute2 and the kernel's ioctl path give it) and universe otherwise.
fn scope_of(a: &IfAddr<'_>) -> u8 {
    a.scope.unwrap_or(if a.addr.is_loopback() {
        RT_SCOPE_HOST
    } else {
        0
    })
}

/// inet_select_addr(dev, dst, RT_SCOPE_LINK) on the device itself: `min(ifa_scope,
/// localnet_scope) > scope` skips an address, and route_localnet lowers localnet_scope from
/// host to link, so host-scope addresses (127/8) become usable.
fn usable_on_dev(a: &IfAddr<'_>, localnet: bool) -> bool {
    let localnet_scope = if localnet {
        RT_SCOPE_LINK
    } else {
        RT_SCOPE_HOST
    };
    scope_of(a).min(localnet_scope) <= RT_SCOPE_LINK
}

/// in_dev_select_addr(in_dev, RT_SCOPE_LINK) on another device: the first primary whose scope
/// is universe or site (`ifa_scope != RT_SCOPE_LINK && ifa_scope <= scope`), never link scope
/// and never route_localnet's host scope.
pub(super) fn lendable<'a>(facts: &'a NsFacts<'a>, ifname: &str) -> Option<&'a IfAddr<'a>> {
    primaries(facts, ifname).into_iter().find(|a| {
        let s = scope_of(a);
        s < RT_SCOPE_LINK
    })
}

/// Whether `sender` is neither an address of `ifname` nor in one of its subnets (a peer
/// address's subnet is the peer's, as inet_ifa_match() has it).
pub fn is_foreign(facts: &NsFacts<'_>, ifname: &str, sender: Ipv4Addr) -> bool {
    !sender.is_unspecified() && !facts.addrs_of(ifname).any(|a| a.covers(sender))
}

/// Whether `sender` is in none of these subnets (an interface's): a peer on that link could
/// then cache it at the wrong place. 0.0.0.0 claims no address (RFC 5227 probe style), so no
/// peer can cache it wrongly.
pub fn foreign_to(sender: Ipv4Addr, subnets: impl IntoIterator<Item = Cidr>) -> bool {
    !sender.is_unspecified() && !subnets.into_iter().any(|c| c.contains(sender))
}

impl<'a> Ctx<'a> {
    pub(super) fn new(
        rules: &'static [Rule],
        req: &'a ArpEvent<'a>,
        facts: &'a NsFacts<'a>,
    ) -> Ctx<'a> {
        let dev: &str = &req.ifname;
        let (all, dev_level, effective) = facts.announce(dev);
        let dev_addrs: Addrs<'_> = facts.addrs.iter().filter(|a| a.ifname == dev).collect();
        let packet_socket = req
            .trigger
            .as_ref()
            .is_some_and(|t| t.origin == Origin::PacketSocket);
        let announcement = req.is_gratuitous() && !packet_socket && req.trigger.is_none();
        // A packet socket's "trigger" is the frame itself, not a packet arp_solicit() read.
        let saddr = req
            .trigger
            .as_ref()
            .filter(|_| !packet_socket)
            .and_then(|t| t.src_v4());
        let source_local = saddr.and_then(|s| local_address(facts, dev, s));
        let onlink = saddr.and_then(|s| {
            dev_addrs
                .iter()
                .copied()
                .find(|a| a.contains(req.target_ip) && a.contains(s))
        });
        let localnet = facts.localnet(dev);
        let usable: Addrs<'_> = primaries(facts, dev)
            .into_iter()
            .filter(|a| usable_on_dev(a, localnet))
            .collect();
        let for_target = usable.iter().copied().find(|a| a.contains(req.target_ip));
        let selected = for_target.or_else(|| usable.first().copied());
        let vrf = facts.vrf_of(dev);
        let (borrowed, borrow_known, borrowed_from_master) = match selected {
            Some(_) => (Vec::new(), true, false),
            None => borrow(facts, dev, vrf),
        };
        Ctx {
            rules,
            req,
            facts,
            all,
            dev_level,
            dev_level_known: facts.announce_dev.contains_key(dev),
            effective,
            case: match effective {
                1 => 1,
                2 => 2,
                _ => 0,
            },
            vrf,
            announcement,
            packet_socket,
            source_local,
            onlink,
            dev_addrs,
            localnet,
            selected,
            selected_for_target: for_target.is_some(),
            borrowed,
            borrow_known,
            borrowed_from_master,
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

    /// The source of the packet arp_solicit() was handed (`ip_hdr(skb)->saddr`).
    pub(super) fn saddr(&self) -> Option<Ipv4Addr> {
        self.req
            .trigger
            .as_ref()
            .filter(|_| !self.packet_socket)
            .and_then(|t| t.src_v4())
    }

    /// Whether arp_solicit() built this frame: not an announcement, not a packet socket's.
    pub(super) fn solicited(&self) -> bool {
        !self.announcement && !self.packet_socket
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
    pub(super) fn with_settings(&self, settings: &[(String, i32)]) -> NsFacts<'a> {
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
    /// a device already at or above `level` keeps its own value. A negative value also acts as
    /// 0 but loses to any other in max(), so only the device's needs raising then.
    pub(super) fn settings_for(&self, level: i32) -> Option<(Vec<(String, i32)>, i32)> {
        let mut settings = Vec::new();
        let mut all = self.all;
        if all > 2 {
            all = level;
            settings.push(("all".to_string(), level));
        } else if all > level {
            return None;
        }
        let mut dev = self.dev_level;
        if !(0..=2).contains(&dev) || all.max(dev) < level {
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

/// What inet_select_addr()'s `no_in_dev` path borrows for `dev` (which has nothing usable):
/// the VRF device's own address first, then the first device of the same L3 domain, in the
/// kernel's device-list order, that in_dev_select_addr() finds one on. Returns the candidates,
/// whether they are the kernel's one answer (the order was read from the kernel) and whether
/// it came from the VRF device.
fn borrow<'a>(
    facts: &'a NsFacts<'a>,
    dev: &str,
    vrf: Option<&'a str>,
) -> (Vec<Borrow<'a>>, bool, bool) {
    // What a device lends: as the BPF program read it while the frame left, else from the
    // namespace's addresses.
    let read = facts.lenders.as_deref().filter(|_| !facts.lenders_cut);
    let lend = |ifname: &'a str| -> Option<Borrow<'a>> {
        match read {
            Some(list) => list.iter().find(|l| l.ifname == ifname).map(|l| Borrow {
                ifname: &l.ifname,
                addr: l.addr,
            }),
            None => lendable(facts, ifname).map(|a| Borrow {
                ifname: &a.ifname,
                addr: a.addr,
            }),
        }
    };
    if let Some(b) = vrf.and_then(lend) {
        return (vec![b], true, true);
    }
    // l3mdev_master_ifindex_rcu(dev) != master_idx skips devices of other domains; a VRF
    // device is its own domain's master, so it is never in the main domain.
    let same_domain = |ifname: &str| ifname != dev && facts.vrf_of(ifname) == vrf;
    if let Some(list) = &facts.lenders {
        if let Some(l) = list.iter().find(|l| same_domain(&l.ifname)) {
            let b = Borrow {
                ifname: &l.ifname,
                addr: l.addr,
            };
            return (vec![b], true, false);
        }
        if !facts.lenders_cut {
            return (Vec::new(), true, false); // the kernel found nothing to borrow
        }
    }
    // No order read from the kernel (or it ran out): every device the facts list after what
    // was read is a candidate, in the facts' order.
    let listed = |ifname: &str| {
        facts
            .lenders
            .as_ref()
            .is_some_and(|l| l.iter().any(|x| x.ifname == ifname))
    };
    let mut seen: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for a in &facts.addrs {
        let name: &str = &a.ifname;
        if seen.contains(&name) || !same_domain(name) || listed(name) {
            continue;
        }
        seen.push(name);
        if let Some(p) = lendable(facts, name) {
            out.push(Borrow {
                ifname: &p.ifname,
                addr: p.addr,
            });
        }
    }
    let known = out.len() <= 1;
    (out, known, false)
}
