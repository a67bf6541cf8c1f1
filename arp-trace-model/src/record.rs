//! [`Record`]: one line of `--json` output or of a trace file, tagged by `"type"`. Every record
//! type is a variant here, so a new one is added in one place: its struct, its variant, and the
//! format version that first carries it.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::arp::ArpEvent;
use crate::conflict::Conflict;
use crate::facts::FactsChange;
use crate::header::Header;
use crate::limits;
use crate::ndisc::NdiscEvent;
use crate::neigh::NeighFailed;
use crate::neigh_change::NeighChange;
use crate::summary::Summary;

/// A record, borrowed (writing one a sink was handed) or owned (read from a line, whose
/// text it may still borrow).
// ARP events are nearly every record: boxing them to shrink the others would cost replay an
// allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record<'a> {
    Header(Held<'a, Header>),
    Arp(Held<'a, ArpEvent<'a>>),
    Ndisc(Held<'a, NdiscEvent<'a>>),
    NeighFailed(Held<'a, NeighFailed<'a>>),
    FactsChange(Held<'a, FactsChange<'a>>),
    Conflict(Held<'a, Conflict<'a>>),
    NeighChange(Held<'a, NeighChange<'a>>),
    Summary(Held<'a, Summary<'a>>),
}

/// A value or a reference to one: `Cow` without its `ToOwned` projection, which would make a
/// record invariant in its lifetime and unable to travel with the bytes it borrows.
#[derive(Debug)]
pub enum Held<'a, T> {
    Borrowed(&'a T),
    Owned(T),
}

impl<T> std::ops::Deref for Held<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        match self {
            Held::Borrowed(t) => t,
            Held::Owned(t) => t,
        }
    }
}

impl<T: Clone> Clone for Held<'_, T> {
    fn clone(&self) -> Self {
        match self {
            Held::Borrowed(t) => Held::Borrowed(t),
            Held::Owned(t) => Held::Owned(t.clone()),
        }
    }
}

impl<T: PartialEq> PartialEq for Held<'_, T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: Serialize> Serialize for Held<'_, T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

impl<T: Clone> Held<'_, T> {
    /// The value to change, cloned first if borrowed.
    pub fn to_mut(&mut self) -> &mut T {
        if let Held::Borrowed(t) = *self {
            *self = Held::Owned(t.clone());
        }
        match self {
            Held::Owned(t) => t,
            Held::Borrowed(_) => unreachable!("made owned above"),
        }
    }

    /// The value itself, cloned if borrowed.
    pub fn into_inner(self) -> T {
        match self {
            Held::Borrowed(t) => t.clone(),
            Held::Owned(t) => t,
        }
    }
}

/// The first version that carries each record type: a reader refuses a type its file's version
/// does not have (an older reader would have refused the file).
const SINCE: [(&str, u32); 8] = [
    ("header", 1),
    ("arp", 1),
    ("ndisc", 3),
    ("neigh_failed", 1),
    ("facts_change", 2),
    ("conflict", 4),
    ("neigh_change", 4),
    ("summary", 1),
];

#[derive(Deserialize)]
struct Tag<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
}

/// How every ARP record the writer writes begins: lets the common case skip the tag pass.
pub const ARP_PREFIX: &str = r#"{"type":"arp","#;

impl<'a> Record<'a> {
    /// Every record type, as `"type"` names it: what the JSON Schema must have a `$defs` entry
    /// for.
    pub fn types() -> impl Iterator<Item = &'static str> {
        SINCE.iter().map(|(t, _)| *t)
    }

    /// The `"type"` of this record.
    pub fn type_name(&self) -> &'static str {
        match self {
            Record::Header(_) => "header",
            Record::Arp(_) => "arp",
            Record::Ndisc(_) => "ndisc",
            Record::NeighFailed(_) => "neigh_failed",
            Record::FactsChange(_) => "facts_change",
            Record::Conflict(_) => "conflict",
            Record::NeighChange(_) => "neigh_change",
            Record::Summary(_) => "summary",
        }
    }

    /// Parses one line after the header of a file of `format_version`, borrowing from the line
    /// where it can, and checks it against [`crate::limits`]. The error is the cause alone;
    /// the reader adds file and line.
    pub fn parse(line: &'a str, format_version: u32) -> Result<Record<'a>, String> {
        let rec = limits::with_entries(limits::RECORD_ENTRIES, || {
            Record::parse_unchecked(line, format_version)
        })?;
        let checked = match &rec {
            Record::Arp(e) => e.check(),
            Record::Ndisc(e) => e.check(),
            Record::NeighFailed(f) => f.check(),
            Record::FactsChange(c) => c.check(),
            Record::Conflict(c) => c.check(),
            Record::NeighChange(c) => c.check(),
            Record::Summary(s) => s.check(),
            Record::Header(h) => h.check(),
        };
        checked.map_err(|e| format!("{} record: {e}", rec.type_name()))?;
        Ok(rec)
    }

    fn parse_unchecked(line: &'a str, format_version: u32) -> Result<Record<'a>, String> {
        if line.starts_with(ARP_PREFIX) {
            return crate::errors::parse_json(line, "arp record")
                .map(|e| Record::Arp(Held::Owned(e)));
        }
        let tag: Tag = serde_json::from_str(line).map_err(|e| {
            format!(
                "not a JSON record: {} (column {})",
                crate::errors::message(&e),
                e.column()
            )
        })?;
        let Some(kind) = tag.kind else {
            return Err("record without a \"type\" field".into());
        };
        let known = SINCE.iter().find(|(t, _)| *t == kind);
        match known {
            Some((_, since)) if *since <= format_version => {}
            _ => {
                return Err(format!(
                    "unknown record type {:?} for format version {format_version} (written \
                     by a newer arp-trace?)",
                    crate::text::clip(&kind, limits::WORD)
                ))
            }
        }
        use crate::errors::parse_json as parse;
        Ok(match &*kind {
            "header" => {
                return Err(
                    "a second header: concatenated traces are not supported; read them one by one"
                        .into(),
                )
            }
            "arp" => Record::Arp(Held::Owned(parse(line, "arp record")?)),
            "ndisc" => Record::Ndisc(Held::Owned(parse(line, "ndisc record")?)),
            "neigh_failed" => Record::NeighFailed(Held::Owned(parse(line, "neigh_failed record")?)),
            "facts_change" => Record::FactsChange(Held::Owned(parse(line, "facts_change record")?)),
            "conflict" => Record::Conflict(Held::Owned(parse(line, "conflict record")?)),
            "neigh_change" => Record::NeighChange(Held::Owned(parse(line, "neigh_change record")?)),
            "summary" => Record::Summary(Held::Owned(parse(line, "summary record")?)),
            _ => unreachable!("SINCE lists every type"),
        })
    }

    /// When the record's event happened; none for the header and the summary.
    pub fn time(&self) -> Option<crate::Time> {
        Some(match self {
            Record::Arp(e) => e.time,
            Record::Ndisc(e) => e.time,
            Record::NeighFailed(f) => f.time,
            Record::FactsChange(c) => c.time,
            Record::Conflict(c) => c.time,
            Record::NeighChange(c) => c.time,
            Record::Header(_) | Record::Summary(_) => return None,
        })
    }

    /// The request or solicitation this record is, if it is one.
    pub fn solicitation(&self) -> Option<crate::Solicitation<'_, 'a>> {
        match self {
            Record::Arp(e) => crate::Solicitation::of_arp(e),
            Record::Ndisc(e) => crate::Solicitation::of_ndisc(e),
            _ => None,
        }
    }

    /// A view of this record that borrows it.
    pub fn borrowed(&self) -> Record<'_> {
        match self {
            Record::Header(h) => Record::Header(Held::Borrowed(h)),
            Record::Arp(e) => Record::Arp(Held::Borrowed(e)),
            Record::Ndisc(e) => Record::Ndisc(Held::Borrowed(e)),
            Record::NeighFailed(f) => Record::NeighFailed(Held::Borrowed(f)),
            Record::FactsChange(c) => Record::FactsChange(Held::Borrowed(c)),
            Record::Conflict(c) => Record::Conflict(Held::Borrowed(c)),
            Record::NeighChange(c) => Record::NeighChange(Held::Borrowed(c)),
            Record::Summary(s) => Record::Summary(Held::Borrowed(s)),
        }
    }

    /// Appends this record's JSON line, without the newline: the same bytes as serde_json,
    /// written by hand for the record types a storm is made of.
    pub fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        match self {
            Record::Arp(e) => crate::json::write_arp(out, e),
            Record::Ndisc(e) => crate::json::write_ndisc(out, e),
            Record::NeighFailed(f) => crate::json::write_neigh_failed(out, f),
            _ => return serde_json::to_writer(out, self),
        }
        Ok(())
    }

    /// One JSON line without the newline.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("records always serialize")
    }

    pub fn into_owned(self) -> Record<'static> {
        match self {
            Record::Header(h) => Record::Header(Held::Owned(h.into_inner())),
            Record::Arp(e) => Record::Arp(Held::Owned(e.into_inner().into_owned())),
            Record::Ndisc(e) => Record::Ndisc(Held::Owned(e.into_inner().into_owned())),
            Record::NeighFailed(f) => Record::NeighFailed(Held::Owned(f.into_inner().into_owned())),
            Record::FactsChange(c) => Record::FactsChange(Held::Owned(c.into_inner().into_owned())),
            Record::Conflict(c) => Record::Conflict(Held::Owned(c.into_inner().into_owned())),
            Record::NeighChange(c) => Record::NeighChange(Held::Owned(c.into_inner().into_owned())),
            Record::Summary(s) => Record::Summary(Held::Owned(s.into_inner().into_owned())),
        }
    }
}
