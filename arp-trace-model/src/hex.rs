//! A frame's bytes as JSON carries them: lowercase hex. Kept as text so reading a trace
//! borrows it from the line; the bytes are decoded when a sink needs them (pcapng).

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::mac::hex_digit;

/// Always an even number of lowercase hex digits.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Hex<'a>(Cow<'a, str>);

impl<'a> Hex<'a> {
    pub fn encode(bytes: &[u8]) -> Hex<'static> {
        let mut s = Vec::with_capacity(bytes.len() * 2);
        for &b in bytes {
            s.extend_from_slice(&crate::mac::hex_pair(b));
        }
        // Only ASCII hex digits went in.
        Hex(Cow::Owned(String::from_utf8(s).unwrap_or_default()))
    }

    /// Validates and keeps `s`, lowercased when it is not already.
    pub fn parse(s: Cow<'a, str>) -> Result<Hex<'a>, &'static str> {
        let b = s.as_bytes();
        if !b.len().is_multiple_of(2) {
            return Err("odd-length hex string");
        }
        if b.iter().any(|&c| hex_digit(c).is_none()) {
            return Err("bad hex string");
        }
        if b.iter().any(u8::is_ascii_uppercase) {
            return Ok(Hex(Cow::Owned(s.to_ascii_lowercase())));
        }
        Ok(Hex(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.0
            .as_bytes()
            .chunks_exact(2)
            .map(|p| hex_digit(p[0]).unwrap_or(0) << 4 | hex_digit(p[1]).unwrap_or(0))
            .collect()
    }

    pub fn byte_len(&self) -> usize {
        self.0.len() / 2
    }

    pub fn into_owned(self) -> Hex<'static> {
        Hex(Cow::Owned(self.0.into_owned()))
    }
}

impl Serialize for Hex<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Hex<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = crate::borrowed_str(d)?;
        Hex::parse(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_lowercases() {
        let h = Hex::encode(&[0xff, 0x02, 0x0a]);
        assert_eq!(h.as_str(), "ff020a");
        assert_eq!(h.bytes(), [0xff, 0x02, 0x0a]);
        assert_eq!(Hex::parse("FF0A".into()).unwrap().as_str(), "ff0a");
        assert!(Hex::parse("f".into()).is_err());
        assert!(Hex::parse("zz".into()).is_err());
    }
}
