//! Why an IPv6 neighbour solicitation carries the source it does: a replay of
//! `ndisc_solicit()` and `ndisc_send_ns()` (net/ipv6/ndisc.c) against the egress device's IPv6
//! addresses and flags as the BPF program read them while the frame left, driven by one rule
//! table ([`NDISC_RULES`], beside ARP's) so every verdict names the kernel path that produced
//! it.
//!
//! The kernel's rule, the same in 6.1, 6.12 and mainline: the queued packet's source is kept
//! only if `ipv6_chk_addr_and_flags(net, saddr, dev, false, 1, TENTATIVE | OPTIMISTIC)` finds
//! it on the *outgoing* device and neither tentative nor optimistic (an optimistic address
//! counts as not tentative, then is banned for being optimistic). Otherwise `ndisc_send_ns()`
//! takes `ipv6_get_lladdr(dev, TENTATIVE | OPTIMISTIC)`: walking the device's address list
//! from its end, it stops at the first address of wider than link scope and takes the first
//! link-scope one that is neither tentative nor optimistic, which is the oldest; with none it
//! returns without sending anything. Unlike ARP with `arp_announce=0`, another interface's
//! address is never used, so nothing leaks across links.
//!
//! Read in 6.1 (6.1.15 and 6.1.119), 6.12, 6.19 and 7.1: `ndisc_solicit()`,
//! `ndisc_send_ns()`, `ndisc_ns_create()`, `ipv6_get_lladdr()`, `ipv6_chk_addr_and_flags()`
//! and `ndisc_error_report()` choose alike in all of them. What differs is around the rule,
//! and is handled where it lands: `struct neighbour` lost its `next` pointer for hash and
//! device lists after 6.12 (every offset moved: they come from BTF), the `kfree_skb`
//! tracepoint gained `rx_sk` in 6.12 (the program reads the first three arguments only),
//! drop-reason numbers differ (read from BTF), 6.2 replaced `IFF_SLAVE` with
//! `IFF_NO_ADDRCONF` as the "no link-local" device flag (both end in `ndisc_no_link_local`),
//! and from 6.19 an entry with `NTF_EXT_VALIDATED` that runs out of probes goes back to
//! STALE instead of FAILED (no `neigh_failed` then, as the kernel drops nothing).

use std::net::{IpAddr, Ipv6Addr};

use arp_trace_model::{
    ip_text, FastIp, Flags6, If6Addr, NdiscEvent, NdiscOp, NeighFailed, Origin, Reason, Remedy,
    Scope6, Verdict,
};

use super::shell;

/// One path of the kernel's ND code. `matches` holds when the kernel takes this path for the
/// event's facts AND the path writes the observed source.
pub struct NdiscRule {
    pub reason: Reason,
    /// The kernel code this rule mirrors.
    pub kernel_fn: &'static str,
    pub matches: fn(&NdCtx<'_>) -> bool,
    pub explanation: fn(&NdCtx<'_>) -> String,
    pub remedy: fn(&NdCtx<'_>) -> Option<Remedy<'static>>,
}

/// The kernel's inputs for one frame, computed once so every predicate is a one-liner.
pub struct NdCtx<'a> {
    ev: &'a NdiscEvent<'a>,
    /// The egress device's addresses, in list order (empty when they could not be read).
    addrs: &'a [If6Addr],
    known: bool,
    /// `ipv6_hdr(skb)->saddr` of the packet handed to `ndisc_solicit()`.
    saddr: Option<Ipv6Addr>,
    /// That source's entry on the egress device, whatever its flags.
    source_on_dev: Option<&'a If6Addr>,
    /// `ipv6_get_lladdr(dev, TENTATIVE | OPTIMISTIC)`.
    lladdr: Option<&'a If6Addr>,
}

const IFA_LINK_RANK: u8 = 2;

/// Where `__ipv6_get_lladdr()`'s `ifp->scope > IFA_LINK` puts a scope: host (0x10) and
/// global (0) are below link (0x20), site (0x40) above.
fn scope_rank(s: Scope6) -> u8 {
    match s {
        Scope6::Global | Scope6::Host => 0,
        Scope6::Link => IFA_LINK_RANK,
        Scope6::Site | Scope6::Other => 3,
    }
}

/// `__ipv6_get_lladdr()` over the device's list as read.
pub fn get_lladdr(addrs: &[If6Addr]) -> Option<&If6Addr> {
    for a in addrs.iter().rev() {
        if scope_rank(a.scope) > IFA_LINK_RANK {
            return None;
        }
        if a.scope == Scope6::Link && a.usable_as_source() {
            return Some(a);
        }
    }
    None
}

impl<'a> NdCtx<'a> {
    fn new(ev: &'a NdiscEvent<'a>) -> Self {
        let addrs: &[If6Addr] = ev.dev_addrs.as_deref().unwrap_or(&[]);
        let saddr = ev
            .trigger
            .as_ref()
            .filter(|_| !ev.user_socket)
            .and_then(|t| match t.src {
                IpAddr::V6(a) => Some(a),
                IpAddr::V4(_) => None,
            });
        NdCtx {
            ev,
            addrs,
            // A cut list may miss the link-local addresses at its end.
            known: ev.dev_addrs.is_some() && !ev.dev_addrs_cut,
            saddr,
            source_on_dev: saddr.and_then(|s| addrs.iter().find(|a| a.addr == s)),
            lladdr: get_lladdr(addrs),
        }
    }

    fn dev(&self) -> &str {
        &self.ev.ifname
    }

    fn kept_source(&self) -> bool {
        self.source_on_dev.is_some_and(If6Addr::usable_as_source)
    }

    fn sent_from_lladdr(&self) -> bool {
        self.lladdr.is_some_and(|l| l.addr == self.ev.sender_ip)
    }

    fn foreign(&self) -> bool {
        let s = self.ev.sender_ip;
        self.known && !s.is_unspecified() && !self.addrs.iter().any(|a| a.contains(s))
    }

    fn trigger_words(&self) -> String {
        let mut out = String::with_capacity(96);
        self.put_trigger_words(&mut out);
        out
    }

    /// [`Self::trigger_words`] appended to `out`.
    fn put_trigger_words(&self, out: &mut String) {
        match &self.ev.trigger {
            Some(t) => crate::sinks::text::put_trigger(out, t),
            None => out.push_str("no packet"),
        }
    }

    fn ll_words(&self) -> String {
        match self.lladdr {
            Some(l) => format!(
                "{}'s link-local address {}",
                self.dev(),
                FastIp(l.addr.into())
            ),
            None => format!("{}'s link-local address", self.dev()),
        }
    }

    /// Why `ndisc_solicit()` did not keep the packet's source.
    fn not_kept_because(&self) -> String {
        let dev = self.dev();
        let Some(src) = self.saddr else {
            return "the queued packet is not IPv6".into();
        };
        let forwarded = self
            .ev
            .trigger
            .as_ref()
            .is_some_and(|t| t.origin == Origin::Forwarded);
        match self.source_on_dev {
            Some(a) if a.flags.has(Flags6::OPTIMISTIC) => format!(
                "{src} is on {dev} but optimistic (usable while duplicate address detection \
                 runs), and ndisc_solicit() bans optimistic sources"
            ),
            Some(a) if a.flags.has(Flags6::DADFAILED) => format!(
                "{src} is on {dev} but failed duplicate address detection (it stays tentative)"
            ),
            Some(_) => format!(
                "{src} is on {dev} but still tentative (duplicate address detection has not \
                 finished)"
            ),
            None if forwarded => format!(
                "the packet was forwarded: its source {src} is not this host's, and a router \
                 always solicits from its own link-local address"
            ),
            None => format!(
                "{src} is not an address of {dev}: ndisc_solicit() keeps a packet's source only \
                 if it is on the outgoing device (ipv6_chk_addr_and_flags() with that device), \
                 where ARP with arp_announce=0 takes any local address"
            ),
        }
    }
}

fn explain_userspace(c: &NdCtx<'_>) -> String {
    let who =
        c.ev.trigger
            .as_ref()
            .and_then(|t| Some(format!("{}[{}]", t.comm.as_deref()?, t.pid?)))
            .unwrap_or_else(|| "A process".into());
    format!(
        "{who} wrote this {} itself through a raw ICMPv6 socket and chose its source {}; the \
         kernel's ND source rules (ndisc_solicit(), ndisc_send_na()) do not apply.",
        if c.ev.op == NdiscOp::Solicit {
            "solicitation"
        } else {
            "advertisement"
        },
        c.ev.sender_ip
    )
}

fn explain_advert(c: &NdCtx<'_>) -> String {
    let f = c.ev.advert.unwrap_or(arp_trace_model::AdvertFlags {
        router: false,
        solicited: false,
        override_: false,
    });
    let kind = if f.solicited {
        format!("the answer to {}'s solicitation", c.ev.dst_ip)
    } else {
        format!("an unsolicited announcement to {}", c.ev.dst_ip)
    };
    let source = if c.ev.sender_ip == c.ev.target_ip {
        "the advertised address itself, since it is the device's (ipv6_get_ifaddr())".to_string()
    } else {
        format!(
            "{}, picked by source address selection (ipv6_dev_get_saddr()) because the \
             advertised address is not the device's own (a proxy or anycast answer)",
            c.ev.sender_ip
        )
    };
    format!(
        "A neighbour advertisement for {} on {}, {kind}{}; ndisc_send_na() sends it from {source}.",
        c.ev.target_ip,
        c.dev(),
        if f.override_ { " (override set)" } else { "" }
    )
}

fn explain_dad(c: &NdCtx<'_>) -> String {
    format!(
        "Duplicate address detection for {t} on {dev}: while {t} is tentative the kernel asks \
         {dst} (its solicited-node group) from the unspecified address ::, as RFC 4862 \
         requires, with no link-layer option{nonce}. An answer, or the same question from \
         another host, means {t} is taken: it then stays tentative and is marked dadfailed.",
        t = c.ev.target_ip,
        dev = c.dev(),
        dst = c.ev.dst_ip,
        nonce = if c.ev.nonce {
            " and a nonce (enhanced_dad) to recognise its own looped-back probe"
        } else {
            ""
        }
    )
}

fn explain_packet_source(c: &NdCtx<'_>) -> String {
    // The explanation of nearly every solicitation, built by pushes: through format! and
    // Display it was a twentieth of a storm's CPU.
    let mut out = String::with_capacity(320);
    out.push_str(ip_text(c.ev.sender_ip.into(), &mut [0; 45]));
    out.push_str(" is the source of the packet queued for ");
    out.push_str(ip_text(c.ev.target_ip.into(), &mut [0; 45]));
    out.push_str(" (");
    c.put_trigger_words(&mut out);
    out.push_str(") and an address of ");
    out.push_str(c.dev());
    out.push_str(
        " that is neither tentative nor optimistic, so ndisc_solicit() kept it as the \
         solicitation's source.",
    );
    out
}

fn explain_link_local(c: &NdCtx<'_>) -> String {
    format!(
        "The packet queued for {t} is {trig}; {why}. So ndisc_solicit() passed no source and \
         ndisc_send_ns() used {ll}. Nothing to change: a link-local source is valid on every \
         link, and IPv6 never puts another interface's address in a solicitation.",
        t = FastIp(c.ev.target_ip.into()),
        trig = c.trigger_words(),
        why = c.not_kept_because(),
        ll = c.ll_words()
    )
}

fn explain_no_trigger(c: &NdCtx<'_>) -> String {
    let what = if c.ev.unicast {
        format!(
            "a unicast reprobe of {}'s entry, sent to {} itself once a STALE entry's delay ran \
             out (packets are sent, not queued, in that state)",
            c.ev.target_ip, c.ev.target_ip
        )
    } else {
        "the entry's queue was empty".to_string()
    };
    format!(
        "No packet was handed to ndisc_solicit() ({what}), so it had no source to keep and \
         ndisc_send_ns() used {}.",
        c.ll_words()
    )
}

fn explain_unexplained(c: &NdCtx<'_>) -> String {
    if !c.known {
        return format!(
            "{}'s IPv6 addresses could not be read as the frame left{}, so which ndisc path \
             wrote {} is unknown.",
            c.dev(),
            if c.ev.dev_addrs_cut {
                " (it has more than were read, and link-local ones come last)"
            } else {
                ""
            },
            c.ev.sender_ip
        );
    }
    let addrs: Vec<String> = c.addrs.iter().map(describe_addr).collect();
    format!(
        "No ndisc_solicit() path writes {} for these facts: {}'s addresses were {}, the \
         queued packet {}.",
        c.ev.sender_ip,
        c.dev(),
        if addrs.is_empty() {
            "none".to_string()
        } else {
            addrs.join(", ")
        },
        c.trigger_words()
    )
}

/// `fe80::3/64 link [permanent]`
pub fn describe_addr(a: &If6Addr) -> String {
    let flags = a.flags.names();
    let scope = serde_json::to_value(a.scope)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    if flags.is_empty() {
        format!("{a} {scope}")
    } else {
        format!("{a} {scope} [{}]", flags.join(" "))
    }
}

pub static NDISC_RULES: &[NdiscRule] = &[
    NdiscRule {
        reason: Reason::Userspace,
        kernel_fn: "rawv6_sendmsg(): a process's raw ICMPv6 socket, not ndisc_send_ns()",
        matches: |c| c.ev.user_socket,
        explanation: explain_userspace,
        remedy: |_| None,
    },
    NdiscRule {
        reason: Reason::NdiscAdvert,
        kernel_fn: "ndisc_send_na(): ipv6_get_ifaddr(), else ipv6_dev_get_saddr()",
        matches: |c| c.ev.op == NdiscOp::Advert,
        explanation: explain_advert,
        remedy: |_| None,
    },
    NdiscRule {
        reason: Reason::NdiscDad,
        kernel_fn: "addrconf_dad_work() + ndisc_send_ns(dev, addr, mcaddr, &in6addr_any, nonce)",
        matches: |c| c.ev.is_dad(),
        explanation: explain_dad,
        remedy: |_| None,
    },
    NdiscRule {
        reason: Reason::NdiscPacketSource,
        kernel_fn: "ndisc_solicit() + ipv6_chk_addr_and_flags(dev, TENTATIVE|OPTIMISTIC)",
        matches: |c| c.known && c.kept_source() && c.saddr == Some(c.ev.sender_ip),
        explanation: explain_packet_source,
        remedy: |_| None,
    },
    NdiscRule {
        reason: Reason::NdiscNoTrigger,
        kernel_fn: "ndisc_solicit() with skb == NULL + ndisc_send_ns() + ipv6_get_lladdr()",
        matches: |c| c.known && c.ev.trigger.is_none() && c.sent_from_lladdr(),
        explanation: explain_no_trigger,
        remedy: |_| None,
    },
    NdiscRule {
        reason: Reason::NdiscLinkLocal,
        kernel_fn:
            "ndisc_solicit(): ipv6_chk_addr_and_flags() fails + ndisc_send_ns() + ipv6_get_lladdr()",
        matches: |c| c.known && c.ev.trigger.is_some() && !c.kept_source() && c.sent_from_lladdr(),
        explanation: explain_link_local,
        remedy: |_| None,
    },
    NdiscRule {
        reason: Reason::Unexplained,
        kernel_fn: "none: no ndisc path writes this source for these facts",
        matches: |_| true,
        explanation: explain_unexplained,
        remedy: |_| None,
    },
];

/// Explains `ev.sender_ip` by the first rule of [`NDISC_RULES`] that matches.
pub fn explain_ndisc(ev: &NdiscEvent<'_>) -> Verdict<'static> {
    let c = NdCtx::new(ev);
    let rule = NDISC_RULES
        .iter()
        .find(|r| (r.matches)(&c))
        .expect("the last rule matches everything");
    Verdict {
        foreign_sender: c.foreign(),
        reason: rule.reason,
        explanation: (rule.explanation)(&c).into(),
        consequence: None,
        remedy: (rule.remedy)(&c),
    }
}

/// The words and the remedy of a failure the joiner found silent (`ndisc_no_link_local`):
/// `ndisc_send_ns()` never sent a solicitation because the device had no usable link-local
/// address and the packets' sources were not usable addresses of the device either.
pub fn explain_silent_failure(f: &mut NeighFailed<'_>) {
    if f.reason != Some(Reason::NdiscNoLinkLocal) || f.explanation.is_some() {
        return;
    }
    let dev = f.ifname.to_string();
    let none_at_all = f.link_locals == Some(0);
    let state = if none_at_all {
        format!("{dev} has no link-local address (addr_gen_mode none, or it was removed)")
    } else {
        format!(
            "{dev}'s link-local address is still tentative or optimistic (duplicate address \
             detection has not finished, or it failed)"
        )
    };
    let sources: Vec<String> = f.dropped.iter().map(|t| t.src.to_string()).collect();
    let from = if sources.is_empty() {
        String::new()
    } else {
        format!(" (from {})", sources.join(", "))
    };
    f.explanation = Some(
        format!(
            "No solicitation for {t} ever left {dev}: {state}. The packets{from} had no usable \
             source on {dev}, so ndisc_solicit() passed none, and ndisc_send_ns() returned \
             without sending because ipv6_get_lladdr() found no link-local address it may use. \
             The entry failed after {n} silent tries and its packets were dropped; nothing on \
             the wire shows it.",
            t = f.target_ip,
            n = f.attempts
        )
        .into(),
    );
    f.remedy = none_at_all.then(|| link_local_remedy(&dev));
}

/// `addr_gen_mode=0` (EUI-64): writing the sysctl makes the kernel generate the link-local
/// address at once (addrconf_sysctl_addr_gen_mode() -> addrconf_init_auto_addrs()).
fn link_local_remedy(dev: &str) -> Remedy<'static> {
    let key = format!("net.ipv6.conf.{}.addr_gen_mode", dev.replace('.', "/"));
    let file = shell::quote(&format!("/etc/sysctl.d/90-ipv6-link-local-{dev}.conf")).into_owned();
    Remedy {
        command: shell::command(&["sysctl".to_string(), "-w".into(), format!("{key}=0")]).into(),
        persistent: format!("echo {} > {file}", shell::command(&[format!("{key} = 0")])).into(),
        tradeoff: format!(
            "0 generates {dev}'s link-local address from its MAC (EUI-64) and 3 (random) or 2 \
             (stable_secret) from a secret; any one lets the kernel solicit. Adding one by hand \
             (ip -6 address add fe80::1/64 dev {dev}) works too, without changing how {dev} \
             generates addresses."
        )
        .into(),
    }
}

#[cfg(test)]
#[path = "ndisc_cases.rs"]
mod cases;
