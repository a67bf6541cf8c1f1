//! A frame's bytes as JSON carries them: lowercase hex. Kept as text so reading a trace
//! borrows it from the line; the bytes are decoded when a sink needs them (pcapng).

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::mac::hex_digit;

/// Always an even number of lowercase hex digits.
#[derive(Clone, Debug, Default)]
pub struct Hex<'a>(Repr<'a>);

/// A captured ARP frame (42-60 bytes) is encoded in place, without an allocation: a storm
/// makes one per request. Longer frames and text read back from a trace are a `Cow`.
#[derive(Clone, Debug)]
enum Repr<'a> {
    Text(Cow<'a, str>),
    Inline { len: u8, text: [u8; INLINE] },
}

/// Hex digits kept in place: frames up to 64 bytes.
const INLINE: usize = 128;

impl Default for Repr<'_> {
    fn default() -> Self {
        Repr::Text(Cow::Borrowed(""))
    }
}

impl PartialEq for Hex<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Hex<'_> {}

impl<'a> Hex<'a> {
    pub fn encode(bytes: &[u8]) -> Hex<'static> {
        if bytes.len() * 2 <= INLINE {
            let mut text = [0u8; INLINE];
            for (pair, &b) in text.chunks_exact_mut(2).zip(bytes) {
                pair.copy_from_slice(&crate::mac::hex_pair(b));
            }
            return Hex(Repr::Inline {
                len: (bytes.len() * 2) as u8,
                text,
            });
        }
        let mut s = Vec::with_capacity(bytes.len() * 2);
        for &b in bytes {
            s.extend_from_slice(&crate::mac::hex_pair(b));
        }
        // Only ASCII hex digits went in.
        Hex(Repr::Text(Cow::Owned(
            String::from_utf8(s).unwrap_or_default(),
        )))
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
            return Ok(Hex(Repr::Text(Cow::Owned(s.to_ascii_lowercase()))));
        }
        Ok(Hex(Repr::Text(s)))
    }

    /// The digits as bytes, without the UTF-8 check `as_str` makes of the in-place form: the
    /// JSON writer quotes them as they are (hex digits need no escaping).
    pub(crate) fn digits(&self) -> &[u8] {
        match &self.0 {
            Repr::Text(s) => s.as_bytes(),
            Repr::Inline { len, text } => &text[..*len as usize],
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Text(s) => s,
            // Only ASCII hex digits went in (`encode`).
            Repr::Inline { len, text } => std::str::from_utf8(&text[..*len as usize]).unwrap_or(""),
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.as_str()
            .as_bytes()
            .chunks_exact(2)
            .map(|p| hex_digit(p[0]).unwrap_or(0) << 4 | hex_digit(p[1]).unwrap_or(0))
            .collect()
    }

    pub fn byte_len(&self) -> usize {
        self.as_str().len() / 2
    }

    pub fn into_owned(self) -> Hex<'static> {
        match self.0 {
            Repr::Text(s) => Hex(Repr::Text(Cow::Owned(s.into_owned()))),
            Repr::Inline { len, text } => Hex(Repr::Inline { len, text }),
        }
    }
}

impl Serialize for Hex<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
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
        // In place and on the heap alike, and equal across the two.
        let long: Vec<u8> = (0..=64).collect();
        let (short, long) = (Hex::encode(&long[..64]), Hex::encode(&long));
        assert_eq!(short.bytes(), (0..64).collect::<Vec<u8>>());
        assert_eq!(long.bytes(), (0..=64).collect::<Vec<u8>>());
        assert_eq!(&long.as_str()[..128], short.as_str());
        assert_eq!(short, Hex::parse(short.as_str().to_owned().into()).unwrap());
        assert_eq!(Hex::encode(&[]).as_str(), "");
    }
}
