//! Wall-clock time in nanoseconds since the Unix epoch, written in JSON as RFC 3339 in UTC with
//! nanoseconds (`2026-11-28T19:31:02.123456789Z`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(pub i128);

impl Time {
    /// The system clock now.
    pub fn now() -> Time {
        Time(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as i128)
                .unwrap_or(0),
        )
    }

    /// `2026-11-28T19:31:02.123456789Z`
    pub fn rfc3339(self) -> String {
        rfc3339_nanos(self.0)
    }
}

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 30];
        match rfc3339_fast(self.0, &mut buf) {
            Some(t) => s.serialize_str(t),
            None => s.serialize_str(&rfc3339_nanos(self.0)),
        }
    }
}

/// What [`rfc3339_nanos`] writes, for times from 1970 to jiff's last (every time a tracer
/// records), without jiff's formatter or an allocation: every record has one.
pub(crate) fn rfc3339_fast(unix_ns: i128, buf: &mut [u8; 30]) -> Option<&str> {
    if !(0..=jiff::Timestamp::MAX.as_nanosecond()).contains(&unix_ns) {
        return None;
    }
    let secs = (unix_ns / 1_000_000_000) as u64;
    let nanos = (unix_ns % 1_000_000_000) as u64;
    let (days, sod) = (secs / 86_400, secs % 86_400);
    // Days to a civil date (H. Hinnant's algorithm), from 1970-01-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as u64;
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, sod / 3600);
    put(14, 2, sod / 60 % 60);
    put(17, 2, sod % 60);
    put(20, 9, nanos);
    for (at, c) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
    ] {
        buf[at] = c;
    }
    buf[29] = b'Z';
    std::str::from_utf8(buf).ok()
}

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = crate::borrowed_str(d)?;
        parse_rfc3339(&s).map(Time).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{} is not an RFC 3339 time that exists (like 2026-11-28T19:31:02.123456789Z)",
                crate::errors::quote(&s)
            ))
        })
    }
}

/// Whether `s` has RFC 3339's `YYYY-MM-DDTHH:MM:SS` shape with a seconds field that exists:
/// jiff reads the wider Temporal grammar and takes a leap second `:60` as `:59`, and a time
/// arp-trace never writes must not be read back as another one.
fn rfc3339_shape(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b'T' | b't' | b' ')
        && b[13] == b':'
        && b[16] == b':'
        && b[17] <= b'5'
}

/// `2026-11-28T19:31:02.123456789Z`; times outside jiff's years -9999..=9999 (never a
/// clock's) are written as its nearest bound rather than as a malformed string.
pub fn rfc3339_nanos(unix_ns: i128) -> String {
    let ts = jiff::Timestamp::from_nanosecond(unix_ns).unwrap_or(if unix_ns < 0 {
        jiff::Timestamp::MIN
    } else {
        jiff::Timestamp::MAX
    });
    format!("{ts:.9}")
}

/// Parses what `rfc3339_nanos` writes (and any RFC 3339 UTC or offset time with 0-9 fraction
/// digits) back to nanoseconds since the epoch; `None` for a date or time that does not exist
/// (2026-02-31 is not March 3rd).
pub fn parse_rfc3339(s: &str) -> Option<i128> {
    if !rfc3339_shape(s) {
        return None;
    }
    s.parse::<jiff::Timestamp>().ok().map(|t| t.as_nanosecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast path writes exactly what jiff does, across the years and at their edges.
    #[test]
    fn fast_formatting_matches_jiff() {
        let mut buf = [0u8; 30];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut cases: Vec<i128> = vec![
            0,
            1,
            999_999_999,
            951_782_400_000_000_000, // 2000-02-29
            jiff::Timestamp::MAX.as_nanosecond(),
        ];
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            cases.push((x as i128) % jiff::Timestamp::MAX.as_nanosecond());
        }
        for t in cases {
            assert_eq!(
                rfc3339_fast(t, &mut buf),
                Some(rfc3339_nanos(t).as_str()),
                "{t}"
            );
        }
        assert_eq!(rfc3339_fast(-1, &mut buf), None);
        assert_eq!(
            rfc3339_fast(jiff::Timestamp::MAX.as_nanosecond() + 1, &mut buf),
            None
        );
    }

    #[test]
    fn formats_rfc3339_with_nanoseconds() {
        assert_eq!(rfc3339_nanos(0), "1970-01-01T00:00:00.000000000Z");
        // 2026-11-28T19:31:02.123456789Z
        let t = 1_795_894_262_123_456_789i128;
        assert_eq!(rfc3339_nanos(t), "2026-11-28T19:31:02.123456789Z");
        assert_eq!(
            rfc3339_nanos(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000000Z"
        );
    }

    #[test]
    fn parses_what_it_writes_and_offsets() {
        for t in [
            0i128,
            1_795_894_262_123_456_789,
            951_782_400_000_000_001,
            4_102_444_799_999_999_999,
        ] {
            assert_eq!(parse_rfc3339(&rfc3339_nanos(t)), Some(t));
        }
        assert_eq!(parse_rfc3339("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00.5Z"), Some(500_000_000));
        for bad in [
            "",
            "1970-01-01",
            "1970-13-01T00:00:00Z",
            "1970-01-01T00:00:00",
            "1970-01-01T00:00:00.Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn dates_that_do_not_exist_are_refused_not_moved() {
        // The example was read as 2026-03-04 and written back so.
        for bad in [
            "2026-02-31T23:59:60.5Z",
            "2026-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2026-12-31T23:59:60Z",
            "2026-01-00T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        for good in [
            "2024-02-29T00:00:00Z",
            "2000-02-29T00:00:00Z",
            "2026-04-30T23:59:59.999999999Z",
        ] {
            let t = parse_rfc3339(good).unwrap();
            assert_eq!(parse_rfc3339(&rfc3339_nanos(t)), Some(t), "{good}");
        }
    }
}
