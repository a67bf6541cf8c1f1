//! The rule table: one [`Rule`] per arp_solicit() path (net/ipv4/arp.c), each naming the
//! kernel code it mirrors, after the two kinds of request arp_solicit() did not build. The
//! first rule that matches a request's [`Ctx`] is its verdict.

use std::net::Ipv4Addr;

use arp_trace_model::{ArpEvent, NsFacts, Reason, Verdict};

use super::ctx::{senders, Ctx, Rule};
use super::remedy::raise_announce;
use super::text::*;

pub static RULES: &[Rule] = &[
    Rule {
        reason: Reason::Userspace,
        kernel_fn: "packet_sendmsg(): a process's AF_PACKET frame, not arp_solicit()",
        matches: |c| c.packet_socket,
        explanation: explain_userspace,
        consequence: foreign_consequence,
        remedy: |_| None,
    },
    Rule {
        reason: Reason::KernelAnnounce,
        kernel_fn: "inetdev_event() + inetdev_send_gratuitous_arp() + arp_send()",
        matches: |c| c.announcement,
        explanation: explain_kernel_announce,
        consequence: foreign_consequence,
        remedy: |_| None,
    },
    Rule {
        reason: Reason::Announce0LocalSource,
        kernel_fn: "arp_solicit() case 0 + inet_addr_type_dev_table()",
        matches: |c| {
            c.solicited()
                && c.case == 0
                && c.source_local.is_some()
                && Some(c.sender()) == c.saddr()
        },
        explanation: explain_announce0,
        consequence: foreign_consequence,
        remedy: raise_announce,
    },
    Rule {
        reason: Reason::Announce1OnlinkSource,
        kernel_fn: "arp_solicit() case 1 + inet_addr_type_dev_table() + inet_addr_onlink()",
        matches: |c| {
            c.solicited()
                && c.case == 1
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
        matches: |c| c.solicited() && c.case == 2 && c.selected_is_sender(),
        explanation: explain_announce2,
        consequence: foreign_consequence,
        remedy: raise_announce,
    },
    Rule {
        reason: Reason::SelectNoTrigger,
        kernel_fn: "arp_solicit() with skb == NULL + inet_select_addr()",
        matches: |c| {
            c.solicited() && c.case < 2 && c.req.trigger.is_none() && c.selected_is_sender()
        },
        explanation: explain_no_trigger,
        consequence: foreign_consequence,
        remedy: raise_announce,
    },
    Rule {
        reason: Reason::SelectNonlocalSource,
        kernel_fn:
            "arp_solicit() case 0/1 + inet_addr_type_dev_table() != RTN_LOCAL + inet_select_addr()",
        matches: |c| {
            c.solicited()
                && c.case < 2
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
            c.solicited()
                && c.case == 1
                && c.source_local.is_some()
                && c.onlink.is_none()
                && c.selected_is_sender()
        },
        explanation: explain_offlink,
        consequence: foreign_consequence,
        remedy: raise_announce,
    },
    Rule {
        reason: Reason::SelectNoAddressOnDev,
        kernel_fn: "inet_select_addr() no_in_dev: the VRF device, then in_dev_select_addr() in device-list order",
        matches: |c| {
            c.solicited()
                && c.saddr_left_zero()
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

/// Explains `req.sender_ip` by the first rule of [`RULES`] that matches.
pub fn explain(req: &ArpEvent<'_>, facts: &NsFacts<'_>) -> Verdict<'static> {
    let c = Ctx::new(RULES, req, facts);
    let rule = c.rule();
    Verdict {
        foreign_sender: c.foreign(),
        reason: rule.reason,
        explanation: (rule.explanation)(&c).into(),
        consequence: (rule.consequence)(&c).map(Into::into),
        remedy: (rule.remedy)(&c),
    }
}

/// The sender IPs arp_solicit() would write for this request's facts, each with the path, read
/// back from [`RULES`] so predictions and verdicts cannot disagree. Several entries only when
/// the egress device has no address and the kernel borrows one in a device order the facts
/// do not pin down (no order read from the kernel).
pub fn kernel_senders(req: &ArpEvent<'_>, facts: &NsFacts<'_>) -> Vec<(Ipv4Addr, Reason)> {
    senders(RULES, req, facts)
}
