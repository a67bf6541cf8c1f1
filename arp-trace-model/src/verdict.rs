//! Why a request carries its sender address: the kernel path that wrote it (`reason`, a
//! stable code), the explanation in words, what it costs and how to change it.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::limits;

/// Which arp_solicit() path wrote the sender IP, or for IPv6 which ndisc path wrote the
/// source. The serialized codes are a stable contract.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Announce0LocalSource,
    Announce1OnlinkSource,
    SelectAnnounce2,
    SelectNoTrigger,
    SelectNonlocalSource,
    SelectOfflinkSource,
    SelectNoAddressOnDev,
    /// Gratuitous ARP the kernel sent on its own (arp_notify, peer notification).
    KernelAnnounce,
    /// A frame a process wrote through a packet socket.
    Userspace,
    Unexplained,
    /// ndisc_solicit(): the queued packet's source is on the egress device and usable.
    NdiscPacketSource,
    /// ndisc_send_ns() with no usable packet source: the device's link-local address.
    NdiscLinkLocal,
    /// ndisc_send_ns() found no usable link-local address: nothing was sent.
    NdiscNoLinkLocal,
    /// addrconf_dad_work(): duplicate address detection, from `::`.
    NdiscDad,
    /// ndisc_solicit() with nothing queued: the device's link-local address.
    NdiscNoTrigger,
    /// ndisc_send_na(): an advertisement, from the address it advertises.
    NdiscAdvert,
}

impl Reason {
    pub const ALL: [Reason; 16] = [
        Reason::Announce0LocalSource,
        Reason::Announce1OnlinkSource,
        Reason::SelectAnnounce2,
        Reason::SelectNoTrigger,
        Reason::SelectNonlocalSource,
        Reason::SelectOfflinkSource,
        Reason::SelectNoAddressOnDev,
        Reason::KernelAnnounce,
        Reason::Userspace,
        Reason::Unexplained,
        Reason::NdiscPacketSource,
        Reason::NdiscLinkLocal,
        Reason::NdiscNoLinkLocal,
        Reason::NdiscDad,
        Reason::NdiscNoTrigger,
        Reason::NdiscAdvert,
    ];

    /// Whether the rule table of `family` has this reason: the `ndisc_*` ones are IPv6's,
    /// `userspace` and `unexplained` both families', the rest ARP's.
    pub fn applies_to(self, family: crate::Family) -> bool {
        let ndisc = matches!(
            self,
            Reason::NdiscPacketSource
                | Reason::NdiscLinkLocal
                | Reason::NdiscNoLinkLocal
                | Reason::NdiscDad
                | Reason::NdiscNoTrigger
                | Reason::NdiscAdvert
        );
        match self {
            Reason::Userspace | Reason::Unexplained => true,
            _ => ndisc == (family == crate::Family::Ipv6),
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Reason::Announce0LocalSource => "announce0_local_source",
            Reason::Announce1OnlinkSource => "announce1_onlink_source",
            Reason::SelectAnnounce2 => "select_announce2",
            Reason::SelectNoTrigger => "select_no_trigger",
            Reason::SelectNonlocalSource => "select_nonlocal_source",
            Reason::SelectOfflinkSource => "select_offlink_source",
            Reason::SelectNoAddressOnDev => "select_no_address_on_dev",
            Reason::KernelAnnounce => "kernel_announce",
            Reason::Userspace => "userspace",
            Reason::Unexplained => "unexplained",
            Reason::NdiscPacketSource => "ndisc_packet_source",
            Reason::NdiscLinkLocal => "ndisc_link_local",
            Reason::NdiscNoLinkLocal => "ndisc_no_link_local",
            Reason::NdiscDad => "ndisc_dad",
            Reason::NdiscNoTrigger => "ndisc_no_trigger",
            Reason::NdiscAdvert => "ndisc_advert",
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
pub struct Remedy<'a> {
    #[serde(borrow)]
    pub command: Cow<'a, str>,
    #[serde(borrow)]
    pub persistent: Cow<'a, str>,
    #[serde(borrow)]
    pub tradeoff: Cow<'a, str>,
}

impl Remedy<'_> {
    /// Whether every field read from a file is within [`crate::limits`].
    pub(crate) fn check(&self, at: &str) -> Result<(), String> {
        limits::text("", &self.command).map_err(|e| format!("{at}.command{e}"))?;
        limits::text("", &self.persistent).map_err(|e| format!("{at}.persistent{e}"))?;
        limits::text("", &self.tradeoff).map_err(|e| format!("{at}.tradeoff{e}"))
    }

    pub fn into_owned(self) -> Remedy<'static> {
        Remedy {
            command: crate::own(self.command),
            persistent: crate::own(self.persistent),
            tradeoff: crate::own(self.tradeoff),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Verdict<'a> {
    /// The sender IP lies in none of the egress interface's subnets.
    pub foreign_sender: bool,
    pub reason: Reason,
    #[serde(borrow)]
    pub explanation: Cow<'a, str>,
    #[serde(borrow)]
    pub consequence: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub remedy: Option<Remedy<'a>>,
}

impl Verdict<'_> {
    /// Whether every field read from a file is within [`crate::limits`].
    pub(crate) fn check(&self) -> Result<(), String> {
        limits::text("explanation", &self.explanation)?;
        if let Some(c) = &self.consequence {
            limits::text("consequence", c)?;
        }
        if let Some(r) = &self.remedy {
            r.check("remedy")?;
        }
        Ok(())
    }

    pub fn into_owned(self) -> Verdict<'static> {
        Verdict {
            foreign_sender: self.foreign_sender,
            reason: self.reason,
            explanation: crate::own(self.explanation),
            consequence: self.consequence.map(crate::own),
            remedy: self.remedy.map(Remedy::into_owned),
        }
    }
}
