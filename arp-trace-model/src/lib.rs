//! arp-trace's data model and file format: one type per record (`header`, `arp`, `ndisc`,
//! `neigh_failed`, `facts_change`, `summary`), the values inside them (addresses, triggers,
//! verdicts, facts), and reading and writing traces. Serde only: no kernel, no runtime, so
//! the fuzzer, xtask and any other reader link this crate alone.
//!
//! Records borrow from the line they were read from where they can (`Cow`), so reading a
//! trace allocates little; `into_owned` makes a record independent of its line.
//!
//! A new record type is added here once: its struct in a module of its own, a variant of
//! [`Record`], and the first format version carrying it (`record.rs`).

mod addr;
mod arp;
mod conflict;
pub mod errors;
mod facts;
pub mod file;
mod header;
mod hex;
pub mod intern;
mod json;
pub mod limits;
mod mac;
mod ndisc;
mod neigh;
mod neigh_change;
mod record;
#[cfg(test)]
mod schema_tests;
mod solicit;
mod summary;
#[cfg(test)]
mod test_rng;
pub mod text;
mod time;
mod trigger;
mod verdict;

pub use addr::{ip_text, ipv4_text, Cidr, FastIp, IfAddr, RT_SCOPE_HOST, RT_SCOPE_LINK};
pub use arp::{ArpEvent, ArpOp, Direction};
pub use conflict::{Conflict, ConflictCause, ConflictKind};
pub use facts::{
    if_addr, Announce, ChangeKind, EgressFacts, FactsChange, Lender, Link, Localnet, NsFacts,
    RequestFacts,
};
pub use header::{Header, IfSnapshot, NsSnapshot, Snapshot, Sysctls};
pub use hex::Hex;
pub use mac::Mac;
pub use ndisc::{AdvertFlags, Flags6, If6Addr, NdiscEvent, NdiscOp, Scope6};
pub use neigh::NeighFailed;
pub use neigh_change::{ChangeCause, ChangeFrame, NeighChange, NudState};
pub use record::{Held, Record, ARP_PREFIX};
pub use solicit::{Family, Solicitation};
pub use summary::{ConflictRow, Count, Row, Summary, TraceCounts, MAX_ROW_MACS};
pub use text::{kernel_name, kernel_name_ref, visible};
pub use time::{parse_rfc3339, rfc3339_nanos, Time};
pub use trigger::{Origin, Task, Trigger};
pub use verdict::{Reason, Remedy, Verdict};

use std::borrow::Cow;

/// The version of `schema/arp-trace.schema.json` (the JSON Schema of every record) that the
/// records this model writes follow; its `$id` ends in the same number. Raised whenever the
/// schema changes: a field or record type added, a value's range or form changed. A trace's
/// header and the first line of `--json` carry it (`schema_version`).
pub const SCHEMA_VERSION: u32 = 3;

/// The JSON Schema itself, for tools that validate records or document their fields.
pub const SCHEMA: &str = include_str!("../schema/arp-trace.schema.json");

/// A `Cow` that owns its text.
pub(crate) fn own(c: Cow<'_, str>) -> Cow<'static, str> {
    Cow::Owned(c.into_owned())
}

/// `Option<Cow<str>>` fields borrowed like `Cow<str>` ones (serde's `borrow` stops at `Option`).
pub(crate) fn opt_str<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string or null")
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            borrowed_str(d).map(Some)
        }
    }
    d.deserialize_option(V)
}

/// A string borrowed from the input when it has no escapes, else owned.
pub(crate) fn borrowed_str<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Cow<'de, str>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Cow<'de, str>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Cow::Borrowed(v))
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Cow::Owned(v.to_owned()))
        }
        fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
            Ok(Cow::Owned(v))
        }
    }
    d.deserialize_str(V)
}
