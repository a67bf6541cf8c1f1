//! `{"type":"header", ...}`: the first record of a trace: where and how it was taken, and a
//! snapshot of every namespace's interfaces, IPv4 addresses and ARP sysctls at start.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::addr::Cidr;
use crate::time::Time;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub format_version: u32,
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
    #[serde(default)]
    pub netns_names: BTreeMap<u32, String>,
    /// Per-namespace interfaces, addresses and sysctls at start; `null` when none was taken.
    #[serde(default)]
    pub snapshot: Option<Snapshot>,
}

impl Header {
    /// A header with nothing known but the format version.
    pub fn empty(format_version: u32) -> Header {
        Header {
            format_version,
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
    #[serde(default)]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IfSnapshot {
    #[serde(flatten)]
    pub sysctls: Sysctls,
    #[serde(default)]
    pub ipv4: Vec<Cidr>,
}
