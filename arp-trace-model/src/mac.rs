//! A link-layer (Ethernet) address, written `02:00:00:00:00:10`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub const BROADCAST: Mac = Mac([0xff; 6]);

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }

    /// The first six bytes of `b`, if it has them.
    pub fn from_slice(b: &[u8]) -> Option<Mac> {
        b.get(..6).map(|m| {
            let mut out = [0u8; 6];
            out.copy_from_slice(m);
            Mac(out)
        })
    }
}

impl Mac {
    /// `02:00:00:00:00:10`, without core::fmt: every record has two or three of these.
    pub(crate) fn text(&self) -> [u8; 17] {
        let mut out = [b':'; 17];
        for (i, &b) in self.0.iter().enumerate() {
            out[3 * i..3 * i + 2].copy_from_slice(&hex_pair(b));
        }
        out
    }
}

/// A byte's two lowercase hex digits.
pub(crate) fn hex_pair(b: u8) -> [u8; 2] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    [DIGITS[(b >> 4) as usize], DIGITS[(b & 15) as usize]]
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.text();
        f.write_str(std::str::from_utf8(&t).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

pub(crate) fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl std::str::FromStr for Mac {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // The form every writer uses, parsed without splitting (replay is hot).
        let b = s.as_bytes();
        if b.len() == 17 && (0..5).all(|i| b[3 * i + 2] == b':') {
            let mut out = [0u8; 6];
            for (i, o) in out.iter_mut().enumerate() {
                match (hex_digit(b[3 * i]), hex_digit(b[3 * i + 1])) {
                    (Some(h), Some(l)) => *o = h << 4 | l,
                    _ => return Err(format!("bad MAC address {s:?}")),
                }
            }
            return Ok(Mac(out));
        }
        let mut out = [0u8; 6];
        let mut n = 0;
        for part in s.split(':') {
            if n == 6 || part.len() != 2 {
                return Err(format!("bad MAC address {s:?}"));
            }
            out[n] = u8::from_str_radix(part, 16).map_err(|_| format!("bad MAC address {s:?}"))?;
            n += 1;
        }
        if n != 6 {
            return Err(format!("bad MAC address {s:?}"));
        }
        Ok(Mac(out))
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = self.text();
        s.serialize_str(std::str::from_utf8(&t).map_err(serde::ser::Error::custom)?)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = crate::borrowed_str(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parsing() {
        let m = Mac([0x02, 0, 0, 0, 0, 0x10]);
        assert_eq!("02:00:00:00:00:10".parse::<Mac>().unwrap(), m);
        assert_eq!(m.to_string(), "02:00:00:00:00:10");
        for bad in [
            "",
            "02:00",
            "02:00:00:00:00:10:11",
            "zz:00:00:00:00:10",
            "2:00:00:00:00:10",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
    }
}
