//! `{"type":"header", ...}`: the first record of a trace: where and how it was taken, and a
//! snapshot of every namespace's interfaces, IPv4 addresses and ARP sysctls at start.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::addr::Cidr;
use crate::limits;
use crate::time::Time;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub format_version: u32,
    /// The version of the JSON Schema the records follow ([`crate::SCHEMA_VERSION`] when
    /// written); 0 in traces written before it was recorded. Writers stamp it themselves.
    #[serde(default)]
    pub schema_version: u32,
    #[serde(default)]
    pub arp_trace_version: String,
    #[serde(default)]
    pub kernel_release: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub start_time: Time,
    /// The hooks the live run used, as its start line names them.
    #[serde(default)]
    pub hooks: String,
    /// The namespace the tracer ran in: its events are labelled without a prefix.
    #[serde(default)]
    pub own_netns: Option<u32>,
    /// `ip netns` names at start (inode -> name), so `-r --netns NAME` resolves offline.
    #[serde(default, deserialize_with = "netns_names")]
    pub netns_names: BTreeMap<u32, String>,
    /// Per-namespace interfaces, addresses and sysctls at start; `null` when none was taken.
    #[serde(default)]
    pub snapshot: Option<Snapshot>,
}

fn netns_names<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<u32, String>, D::Error> {
    limits::map(d, limits::NETNS_NAMES, "netns_names")
}

fn namespaces<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, NsSnapshot>, D::Error> {
    limits::map(d, limits::NAMESPACES, "snapshot.namespaces")
}

fn interfaces<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, IfSnapshot>>, D::Error> {
    limits::opt_map(d, limits::INTERFACES, "snapshot interfaces")
}

fn ipv4<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Cidr>, D::Error> {
    limits::seq(d, limits::ADDRS, "snapshot ipv4")
}

impl Header {
    /// Whether every field read from a file is within [`crate::limits`].
    pub(crate) fn check(&self) -> Result<(), String> {
        limits::len(
            "arp_trace_version",
            &self.arp_trace_version,
            limits::WORD,
            "a version",
        )?;
        for (field, v) in [
            ("kernel_release", &self.kernel_release),
            ("hostname", &self.hostname),
            ("hooks", &self.hooks),
        ] {
            limits::len(field, v, limits::LABEL, "this field")?;
        }
        for n in self.netns_names.values() {
            limits::netns_name("netns_names", n)?;
        }
        for (key, ns) in self.snapshot.iter().flat_map(|s| &s.namespaces) {
            limits::netns_name("snapshot.namespaces", key)?;
            if let Some(e) = &ns.error {
                limits::text("snapshot error", e)?;
            }
            for name in ns.interfaces.iter().flat_map(BTreeMap::keys) {
                limits::ifname("snapshot interfaces", name)?;
            }
        }
        Ok(())
    }

    /// This header as the records written now carry it: stamped with [`crate::SCHEMA_VERSION`],
    /// whatever trace it was read from, since every record after it is written by this model.
    pub fn current(&self) -> Header {
        Header {
            schema_version: crate::SCHEMA_VERSION,
            ..self.clone()
        }
    }

    /// A header with nothing known but the format version.
    pub fn empty(format_version: u32) -> Header {
        Header {
            format_version,
            schema_version: 0,
            arp_trace_version: String::new(),
            kernel_release: String::new(),
            hostname: String::new(),
            start_time: Time::default(),
            hooks: String::new(),
            own_netns: None,
            netns_names: BTreeMap::new(),
            snapshot: None,
        }
    }
}

/// `{"namespaces": {"<name or inode>": {...}}}`. Fields are in alphabetical order: the format
/// began as a sorted JSON map, and files stay byte-identical.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    #[serde(default, deserialize_with = "namespaces")]
    pub namespaces: BTreeMap<String, NsSnapshot>,
}

/// One namespace: its `all` sysctls and every interface with an IPv4 configuration, or why it
/// could not be read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NsSnapshot {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<Sysctls>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "interfaces"
    )]
    pub interfaces: Option<BTreeMap<String, IfSnapshot>>,
    pub netns: u32,
}

/// The ARP sysctls of `net.ipv4.conf.<conf>`; absent when unreadable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sysctls {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arp_announce: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arp_filter: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arp_ignore: Option<i64>,
}

/// One interface: its sysctls and IPv4 addresses.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct IfSnapshot {
    #[serde(flatten)]
    pub sysctls: Sysctls,
    #[serde(default)]
    pub ipv4: Vec<Cidr>,
}

// Read through a flat mirror: serde's `flatten` would first copy every field it does not
// know, however large, into a generic value.
#[derive(Deserialize)]
struct IfWire {
    #[serde(default)]
    arp_announce: Option<i64>,
    #[serde(default)]
    arp_filter: Option<i64>,
    #[serde(default)]
    arp_ignore: Option<i64>,
    #[serde(default, deserialize_with = "ipv4")]
    ipv4: Vec<Cidr>,
}

impl<'de> Deserialize<'de> for IfSnapshot {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = IfWire::deserialize(d)?;
        Ok(IfSnapshot {
            sysctls: Sysctls {
                arp_announce: w.arp_announce,
                arp_filter: w.arp_filter,
                arp_ignore: w.arp_ignore,
            },
            ipv4: w.ipv4,
        })
    }
}
