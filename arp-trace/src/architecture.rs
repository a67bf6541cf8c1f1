//! Checks on the shape of the code itself: module dependencies form no cycle, every module
//! says at its top what it holds, and no module grows past ~600 lines without saying why.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, with its module path (`explain::rules`; `mod.rs` is its
/// folder's module, `lib.rs` the crate root, written as an empty path).
fn modules(dir: &Path) -> Vec<(Vec<String>, PathBuf)> {
    fn walk(dir: &Path, prefix: &[String], out: &mut Vec<(Vec<String>, PathBuf)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            if path.is_dir() {
                let mut p = prefix.to_vec();
                p.push(name);
                walk(&path, &p, out);
            } else if let Some(stem) = name.strip_suffix(".rs") {
                let mut p = prefix.to_vec();
                if !matches!(stem, "mod" | "lib" | "main") {
                    p.push(stem.to_string());
                }
                out.push((p, path));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &[], &mut out);
    out
}

/// The code of a file before its tests.
fn non_test(text: &str) -> &str {
    match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    }
}

fn ident(s: &str) -> (&str, &str) {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    (&s[..end], &s[end..])
}

/// Paths after `crate::` and `super::` (relative to `module`), expanding one level of `{..}`.
fn references(module: &[String], is_mod_rs: bool, code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    // `use child::item;` in a folder's mod.rs: a path relative to the module itself.
    if is_mod_rs {
        for line in code.lines() {
            let l = line.trim_start();
            let Some(path) = l
                .strip_prefix("pub use ")
                .or_else(|| l.strip_prefix("use "))
            else {
                continue;
            };
            let (first, _) = ident(path);
            if !matches!(first, "" | "crate" | "super" | "self" | "std" | "core") {
                let mut p = module.to_vec();
                p.push(first.to_string());
                out.push(p);
            }
        }
    }
    for (kw, base) in [
        ("crate::", Vec::new()),
        ("super::", {
            // `super` is the module's parent (a folder's mod.rs is the folder's module).
            let mut b = module.to_vec();
            b.pop();
            b
        }),
    ] {
        let mut rest = code;
        while let Some(i) = rest.find(kw) {
            let before = rest[..i].chars().last();
            rest = &rest[i + kw.len()..];
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                continue; // `super::super::`, handled as the outer one
            }
            let mut base = base.clone();
            let mut r = rest;
            while let Some(more) = r.strip_prefix("super::") {
                base.pop();
                r = more;
            }
            if let Some(group) = r.strip_prefix('{') {
                let inner = &group[..group.find('}').unwrap_or(group.len())];
                for item in inner.split(',') {
                    let mut p = base.clone();
                    for seg in item.trim().split("::") {
                        let (id, _) = ident(seg.trim());
                        if id.is_empty() {
                            break;
                        }
                        p.push(id.to_string());
                    }
                    out.push(p);
                }
                continue;
            }
            let mut p = base;
            loop {
                let (id, after) = ident(r);
                if id.is_empty() {
                    break;
                }
                p.push(id.to_string());
                match after.strip_prefix("::") {
                    Some(next) if !next.starts_with('{') => r = next,
                    Some(next) => {
                        // `a::b::{c, d}`: each item
                        let inner = &next[1..next.find('}').unwrap_or(next.len())];
                        for item in inner.split(',') {
                            let (id, _) = ident(item.trim());
                            if !id.is_empty() {
                                let mut q = p.clone();
                                q.push(id.to_string());
                                out.push(q);
                            }
                        }
                        break;
                    }
                    None => break,
                }
            }
            out.push(p);
        }
    }
    out
}

/// Module dependency edges of the crate under `src`, from non-test code.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules(src);
    let known: BTreeSet<Vec<String>> = mods.iter().map(|(m, _)| m.clone()).collect();
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, path) in &mods {
        if m.last()
            .is_some_and(|l| l == "tests" || l == "architecture")
            || m.is_empty()
        {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        let is_mod_rs = path.file_name().is_some_and(|n| n == "mod.rs");
        for r in references(m, is_mod_rs, non_test(&text)) {
            // The longest prefix that is a module.
            let target = (1..=r.len())
                .rev()
                .map(|n| r[..n].to_vec())
                .find(|p| known.contains(p));
            // A child using its ancestor's own items depends on that ancestor too.
            if let Some(t) = target.filter(|t| t != m) {
                g.entry(m.join("::")).or_default().insert(t.join("::"));
            }
        }
        g.entry(m.join("::")).or_default();
    }
    g
}

fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let i = stack.iter().position(|s| s == n).unwrap_or(0);
                let mut c = stack[i..].to_vec();
                c.push(n.to_string());
                return Some(c);
            }
            _ => {}
        }
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, g, state, stack) {
                return Some(c);
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if let Some(c) = visit(n, g, &mut state, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

fn crate_src(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(name)
        .join("src")
}

#[test]
fn module_dependencies_have_no_cycle() {
    for krate in ["arp-trace", "arp-trace-model"] {
        let g = graph(&crate_src(krate));
        assert!(g.len() > 5, "{krate}: {g:?}");
        if let Some(c) = find_cycle(&g) {
            panic!("{krate}: import cycle {}", c.join(" -> "));
        }
    }
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let code_a = "use crate::b::thing;\n";
    let refs = references(&["a".into()], false, code_a);
    assert_eq!(refs, [vec!["b".to_string(), "thing".into()]]);
    let refs = references(&["x".into(), "y".into()], false, "use super::{z, w::v};");
    assert_eq!(
        refs,
        [
            vec!["x".to_string(), "z".into()],
            vec!["x".to_string(), "w".into(), "v".into()]
        ]
    );
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    assert!(find_cycle(&g).is_some());
    g.insert("b".to_string(), BTreeSet::new());
    assert!(find_cycle(&g).is_none());
}

#[test]
fn every_module_says_what_it_holds_and_long_ones_say_why() {
    for krate in [
        "arp-trace",
        "arp-trace-model",
        "arp-trace-common",
        "arp-trace-ebpf",
        "xtask",
        "tests",
    ] {
        for (m, path) in modules(&crate_src(krate)) {
            let text = std::fs::read_to_string(&path).unwrap();
            let file = path.display().to_string();
            let is_test_file = m.last().is_some_and(|l| l == "tests");
            if !is_test_file {
                assert!(text.starts_with("//!"), "{file}: no //! line at its top");
            }
            let lines = text.lines().count();
            let head: String = text
                .lines()
                .take_while(|l| l.starts_with("//!"))
                .collect::<Vec<_>>()
                .join(" ");
            assert!(
                lines <= 650 || head.contains("Long"),
                "{file}: {lines} lines and no reason at its top"
            );
        }
    }
}
