//! Text from other people: names the kernel hands over as bytes (a process's `comm`, an
//! interface name), and any string about to reach a terminal, a log or a capture file.
//!
//! Two forms, one per destination:
//! - **Kernel bytes to a string** ([`kernel_name`]): bytes that are valid UTF-8 are kept as
//!   they are; each byte that is not becomes the four characters `\xNN` (lowercase hex), so
//!   JSON and trace files carry every byte visibly and nothing is replaced by U+FFFD. A
//!   backslash is kept as it is, so every UTF-8 name (nearly all of them) is carried exactly;
//!   the price is that a name that is not UTF-8 reads the same as a UTF-8 name spelling out
//!   the same `\xNN` text.
//! - **A string to a terminal** ([`visible`]): every character that a terminal or a viewer
//!   would act on rather than show is written as an escape: `\a \b \t \n \v \f \r` for those
//!   C0 controls, `\xNN` for the other C0 controls and DEL, `\u{NNNN}` for the C1 controls
//!   (U+0080-U+009F) and for the characters that reorder or hide text (bidirectional
//!   overrides and isolates, U+2028/U+2029). A comm of `ESC ]2;owned BEL` is shown as
//!   `\x1b]2;owned\a` and changes nothing. Everything else, backslash included, is shown as
//!   it is, so ordinary names and today's output are unchanged.
//!
//! JSON needs neither: serde escapes control characters itself, and a JSON string is exactly
//! the name (with any invalid byte in its `\xNN` form).

use std::borrow::Cow;
use std::fmt::Write as _;

/// A NUL-terminated name from the kernel (`comm`, `ifname`, a file name) as a string: UTF-8
/// kept, every other byte as `\xNN`.
pub fn kernel_name(bytes: &[u8]) -> String {
    kernel_name_ref(bytes).into_owned()
}

/// [`kernel_name`], borrowed from `bytes` when they are UTF-8 (nearly always): for a name
/// only looked at, not kept.
pub fn kernel_name_ref(bytes: &[u8]) -> Cow<'_, str> {
    let end = bytes.iter().position(|&c| c == 0).unwrap_or(bytes.len());
    if let Ok(s) = std::str::from_utf8(&bytes[..end]) {
        return Cow::Borrowed(s);
    }
    let mut rest = &bytes[..end];
    let mut out = String::with_capacity(rest.len());
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                return Cow::Owned(out);
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                // `good` is the prefix from_utf8 just found valid.
                out.push_str(std::str::from_utf8(good).unwrap_or_default());
                let n = e.error_len().unwrap_or(bad.len());
                for b in &bad[..n] {
                    let _ = write!(out, "\\x{b:02x}");
                }
                rest = &bad[n..];
            }
        }
    }
}

/// Decimal text of `v` without core::fmt.
pub fn decimal(mut v: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).unwrap_or_default()
}

/// At most the first `max` bytes of `s`, cut at a character boundary: for quoting input in
/// a message without quoting all of it.
pub fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Whether a terminal or viewer would act on `c` instead of showing it.
fn needs_escape(c: char) -> bool {
    matches!(c,
        '\0'..='\x1f' | '\x7f' | '\u{80}'..='\u{9f}'
        // Bidirectional marks, embeddings, overrides and isolates: they reorder what follows,
        // so a name could show as another one (CVE-2021-42574).
        | '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        // Line and paragraph separators: a new line in some viewers.
        | '\u{2028}' | '\u{2029}')
}

/// `s` as it may be shown: control characters and text-reordering characters escaped (see
/// the module's documentation). Borrows when nothing needs escaping, as almost always.
pub fn visible(s: &str) -> Cow<'_, str> {
    let Some(first) = s.find(needs_escape) else {
        return Cow::Borrowed(s);
    };
    let mut out = String::with_capacity(s.len() + 8);
    out.push_str(&s[..first]);
    for c in s[first..].chars() {
        if !needs_escape(c) {
            out.push(c);
            continue;
        }
        match c {
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\x0b' => out.push_str("\\v"),
            '\x0c' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '\0'..='\x1f' | '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            _ => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_bytes_keep_utf8_and_show_every_other_byte() {
        assert_eq!(kernel_name(b"eth3\0\0\0junk"), "eth3");
        assert_eq!(kernel_name(b"caf\xc3\xa9"), "café");
        assert_eq!(kernel_name(b"a\xffb\xc3"), "a\\xffb\\xc3");
        assert_eq!(kernel_name(b"\xe2\x82"), "\\xe2\\x82");
        // Controls are valid UTF-8: JSON escapes them itself, so they are kept.
        assert_eq!(kernel_name(b"\x1b]2;x\x07"), "\x1b]2;x\x07");
        assert_eq!(kernel_name(b"a\\b"), "a\\b");
        assert!(matches!(
            kernel_name_ref(b"eth3\0junk"),
            Cow::Borrowed("eth3")
        ));
        assert_eq!(kernel_name_ref(b"a\xffb\0"), "a\\xffb");
    }

    #[test]
    fn terminal_text_shows_controls_as_escapes() {
        assert!(matches!(visible("srv/eth3 python3[42]"), Cow::Borrowed(_)));
        assert_eq!(
            visible("\x1b]2;owned\x07\x1b[2J"),
            "\\x1b]2;owned\\a\\x1b[2J"
        );
        assert_eq!(
            visible("a\tb\nc\rd\x0b\x0c\x08\0\x7f"),
            "a\\tb\\nc\\rd\\v\\f\\b\\x00\\x7f"
        );
        assert_eq!(visible("x\u{9b}2J"), "x\\u{009b}2J");
        assert_eq!(visible("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(visible("é ü 漢字 \\x41"), "é ü 漢字 \\x41");
    }
}
