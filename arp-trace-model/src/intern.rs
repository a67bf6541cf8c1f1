//! Names that recur on nearly every record (interfaces, processes, namespaces) kept once for
//! the run: a record borrows its name instead of allocating and freeing a copy, so cloning a
//! trigger or handing a name to the next record costs nothing. During an ARP storm those
//! copies were a large share of the tracer's CPU.
//!
//! The table is bounded: a host that keeps making new names (a process renaming itself for
//! every packet, namespaces created and deleted) fills it, and from then on new names are
//! copied as before. What it holds lives until exit, at most [`MAX_BYTES`].

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashSet;

/// At most this many names, and this many bytes of them, per thread.
pub const MAX_NAMES: usize = 4096;
pub const MAX_BYTES: usize = 256 * 1024;
/// Longer strings are not names: copied, never kept.
const MAX_LEN: usize = 255;

#[derive(Default)]
struct Table {
    names: HashSet<&'static str, foldhash::fast::RandomState>,
    bytes: usize,
}

thread_local! {
    static TABLE: RefCell<Table> = RefCell::default();
}

/// `s` as a name kept for the run, or a copy when the table is full.
pub fn name(s: &str) -> Cow<'static, str> {
    TABLE.with(|t| {
        let mut t = t.borrow_mut();
        if let Some(&kept) = t.names.get(s) {
            return Cow::Borrowed(kept);
        }
        if s.len() > MAX_LEN || t.names.len() >= MAX_NAMES || t.bytes + s.len() > MAX_BYTES {
            return Cow::Owned(s.to_owned());
        }
        // Leaked on purpose: the table is the one owner, for the whole run, within its bound.
        let kept: &'static str = Box::leak(s.to_owned().into_boxed_str());
        t.bytes += kept.len();
        t.names.insert(kept);
        Cow::Borrowed(kept)
    })
}

/// A NUL-terminated kernel name ([`crate::kernel_name`]) kept for the run.
pub fn kernel_name(bytes: &[u8]) -> Cow<'static, str> {
    match crate::kernel_name_ref(bytes) {
        Cow::Borrowed(s) => name(s),
        Cow::Owned(s) => name(&s),
    }
}

/// How many names the table holds, and their bytes (tests).
pub fn held() -> (usize, usize) {
    TABLE.with(|t| {
        let t = t.borrow();
        (t.names.len(), t.bytes)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_kept_once_and_borrowed_after() {
        let a = name("eth3-intern-test");
        let (n, bytes) = held();
        let b = name("eth3-intern-test");
        assert!(matches!((&a, &b), (Cow::Borrowed(x), Cow::Borrowed(y)) if std::ptr::eq(*x, *y)));
        assert_eq!(held(), (n, bytes));
        assert_eq!(kernel_name(b"caf\xc3\xa9\0junk"), "café");
        assert_eq!(kernel_name(b"a\xffb"), "a\\xffb");
    }

    /// A host that keeps inventing names fills the table and no more: later names are
    /// copies, still correct.
    #[test]
    fn the_table_stops_at_its_bound() {
        std::thread::spawn(|| {
            for i in 0..MAX_NAMES + 100 {
                let s = format!("p{i}");
                assert_eq!(name(&s), s.as_str());
            }
            assert_eq!(held().0, MAX_NAMES);
            assert!(matches!(name("one-more"), Cow::Owned(_)));
            let long = "x".repeat(MAX_LEN + 1);
            assert!(matches!(name(&long), Cow::Owned(_)));
        })
        .join()
        .unwrap();
    }
}
