//! A minimal reader of the kernel's BTF (`/sys/kernel/btf/vmlinux`), just enough to find the
//! byte offset of a struct member path such as `sk_buff.dev` or `net.ns.inum`.
//!
//! Rust eBPF programs get no CO-RE relocations, so the loader resolves every field the programs
//! read here, on the running kernel, and passes the offsets in as globals.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};

const BTF_MAGIC: u16 = 0xeb9f;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, Clone)]
struct Member {
    name_off: u32,
    type_id: u32,
    bit_offset: u32,
}

#[derive(Debug, Clone)]
struct Type {
    name_off: u32,
    kind: u32,
    /// Enumerators (name offset, value) for enums.
    enumerators: Vec<(u32, i64)>,
    /// `size` for structs/unions/ints, referenced type id for typedefs, pointers and modifiers.
    size_or_type: u32,
    members: Vec<Member>,
}

/// A parsed BTF blob.
pub struct Btf {
    strings: Vec<u8>,
    /// Index 0 is the implicit `void` type.
    types: Vec<Type>,
    /// Struct and union names to their type ids (first wins, as the kernel's own lookups do).
    by_name: HashMap<String, u32>,
}

/// Where a member lives inside its outermost struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub offset: u32,
    pub size: u32,
}

fn u16_at(b: &[u8], off: usize) -> Result<u16> {
    let s = b.get(off..off + 2).context("BTF data is truncated")?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], off: usize) -> Result<u32> {
    let s = b.get(off..off + 4).context("BTF data is truncated")?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

impl Btf {
    /// The running kernel's BTF.
    pub fn from_sys_fs() -> Result<Btf> {
        const PATH: &str = "/sys/kernel/btf/vmlinux";
        let data = std::fs::read(PATH).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow::anyhow!(
                    "{PATH} not found: this kernel has no BTF; arp-trace needs a kernel built \
                     with CONFIG_DEBUG_INFO_BTF=y (every current distribution kernel is)"
                )
            } else {
                anyhow::anyhow!("cannot read {PATH}: {e}")
            }
        })?;
        Btf::parse(&data).with_context(|| format!("cannot parse {PATH}"))
    }

    /// Parses a little-endian BTF blob (the only byte order of the hosts arp-trace targets).
    pub fn parse(data: &[u8]) -> Result<Btf> {
        if u16_at(data, 0)? != BTF_MAGIC {
            bail!("not BTF data (bad magic)");
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let type_off = u32_at(data, 8)? as usize;
        let type_len = u32_at(data, 12)? as usize;
        let str_off = u32_at(data, 16)? as usize;
        let str_len = u32_at(data, 20)? as usize;
        let tsec = data
            .get(hdr_len + type_off..hdr_len + type_off + type_len)
            .context("BTF type section is out of bounds")?;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .context("BTF string section is out of bounds")?
            .to_vec();

        let mut types = vec![Type {
            name_off: 0,
            kind: 0,
            enumerators: vec![],
            size_or_type: 0,
            members: vec![],
        }];
        let mut pos = 0usize;
        while pos < tsec.len() {
            let name_off = u32_at(tsec, pos)?;
            let info = u32_at(tsec, pos + 4)?;
            let size_or_type = u32_at(tsec, pos + 8)?;
            pos += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let mut members = Vec::new();
            let mut enumerators = Vec::new();
            match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => pos += 4,
                KIND_ARRAY => pos += 12,
                KIND_STRUCT | KIND_UNION => {
                    members.reserve(vlen);
                    for i in 0..vlen {
                        let m = pos + i * 12;
                        let raw = u32_at(tsec, m + 8)?;
                        members.push(Member {
                            name_off: u32_at(tsec, m)?,
                            type_id: u32_at(tsec, m + 4)?,
                            bit_offset: if kind_flag { raw & 0x00ff_ffff } else { raw },
                        });
                    }
                    pos += vlen * 12;
                }
                KIND_ENUM => {
                    for i in 0..vlen {
                        let m = pos + i * 8;
                        enumerators.push((u32_at(tsec, m)?, u32_at(tsec, m + 4)? as i32 as i64));
                    }
                    pos += vlen * 8;
                }
                KIND_ENUM64 => {
                    for i in 0..vlen {
                        let m = pos + i * 12;
                        let lo = u32_at(tsec, m + 4)? as u64;
                        let hi = u32_at(tsec, m + 8)? as u64;
                        enumerators.push((u32_at(tsec, m)?, (hi << 32 | lo) as i64));
                    }
                    pos += vlen * 12;
                }
                KIND_FUNC_PROTO => pos += vlen * 8,
                KIND_DATASEC => {
                    // Each variable of the section: its VAR type and byte offset.
                    for i in 0..vlen {
                        let m = pos + i * 12;
                        members.push(Member {
                            name_off: 0,
                            type_id: u32_at(tsec, m)?,
                            bit_offset: u32_at(tsec, m + 4)?,
                        });
                    }
                    pos += vlen * 12;
                }
                KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
                | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => {}
                other => bail!("unknown BTF kind {other} at type {}", types.len()),
            }
            types.push(Type {
                name_off,
                kind,
                enumerators,
                size_or_type,
                members,
            });
        }
        if pos != tsec.len() {
            bail!("BTF type section is truncated");
        }

        let mut btf = Btf {
            strings,
            types,
            by_name: HashMap::new(),
        };
        let mut by_name = HashMap::new();
        for (id, t) in btf.types.iter().enumerate() {
            if (t.kind == KIND_STRUCT || t.kind == KIND_UNION) && t.name_off != 0 {
                let name = btf.name(t.name_off);
                by_name.entry(name.to_owned()).or_insert(id as u32);
            }
        }
        btf.by_name = by_name;
        Ok(btf)
    }

    fn name(&self, off: u32) -> &str {
        let rest = self.strings.get(off as usize..).unwrap_or(&[]);
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    /// Follows typedefs and qualifiers to the underlying type.
    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..32 {
            let t = self.types.get(id as usize)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_type
                }
                _ => return Some(t),
            }
        }
        None
    }

    fn size_of(&self, id: u32) -> u32 {
        match self.resolve(id) {
            Some(t) if t.kind == KIND_PTR => 8,
            Some(t) if t.kind == KIND_ARRAY => 0, // not needed by callers; arrays report 0
            Some(t) => t.size_or_type,
            None => 0,
        }
    }

    /// Finds `name` among the members of `t`, looking through anonymous structs and unions
    /// the way C does. Returns the bit offset from the start of `t` and the member's type.
    fn find_member(&self, t: &Type, name: &str, depth: u32) -> Option<(u32, u32)> {
        if depth > 8 {
            return None;
        }
        for m in &t.members {
            if m.name_off != 0 && self.name(m.name_off) == name {
                return Some((m.bit_offset, m.type_id));
            }
        }
        for m in &t.members {
            if m.name_off == 0 {
                if let Some(inner) = self.resolve(m.type_id) {
                    if inner.kind == KIND_STRUCT || inner.kind == KIND_UNION {
                        if let Some((off, ty)) = self.find_member(inner, name, depth + 1) {
                            return Some((m.bit_offset + off, ty));
                        }
                    }
                }
            }
        }
        None
    }

    /// Whether the kernel has a function `name` in its BTF (what fentry attaches to).
    pub fn has_func(&self, name: &str) -> bool {
        self.types
            .iter()
            .any(|t| t.kind == KIND_FUNC && self.name(t.name_off) == name)
    }

    /// Value of enumerator `name` in `enum enum_name`, if this kernel has it.
    pub fn enum_value(&self, enum_name: &str, name: &str) -> Option<i64> {
        self.types
            .iter()
            .filter(|t| {
                (t.kind == KIND_ENUM || t.kind == KIND_ENUM64) && self.name(t.name_off) == enum_name
            })
            .flat_map(|t| t.enumerators.iter())
            .find(|(n, _)| self.name(*n) == name)
            .map(|(_, v)| *v)
    }

    /// Whether a struct or union of this name exists.
    /// Where the per-CPU variable `name` sits in the kernel's per-CPU section
    /// (`.data..percpu`), from the section's BTF: two variables lie as far apart in every
    /// CPU's copy as here.
    pub fn percpu_var(&self, name: &str) -> Option<u32> {
        let sec = self
            .types
            .iter()
            .find(|t| t.kind == KIND_DATASEC && self.name(t.name_off) == ".data..percpu")?;
        sec.members
            .iter()
            .find(|m| {
                self.types
                    .get(m.type_id as usize)
                    .is_some_and(|v| v.kind == KIND_VAR && self.name(v.name_off) == name)
            })
            .map(|m| m.bit_offset)
    }

    pub fn has_struct(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Byte offset and size of `path` (e.g. `"ns.inum"`) inside `struct strukt`.
    pub fn field(&self, strukt: &str, path: &str) -> Result<Field> {
        let id = *self
            .by_name
            .get(strukt)
            .with_context(|| format!("struct {strukt} is not in the kernel's BTF"))?;
        let mut t = &self.types[id as usize];
        let mut bits = 0u32;
        let mut ty = id;
        for (i, part) in path.split('.').enumerate() {
            if i > 0 {
                t = self
                    .resolve(ty)
                    .filter(|t| t.kind == KIND_STRUCT || t.kind == KIND_UNION)
                    .with_context(|| format!("{strukt}.{path}: `{part}` is not inside a struct"))?;
            }
            let (off, member_ty) = self
                .find_member(t, part, 0)
                .with_context(|| format!("the running kernel has no field {strukt}.{path}"))?;
            bits += off;
            ty = member_ty;
        }
        if !bits.is_multiple_of(8) {
            bail!("{strukt}.{path} is a bitfield; arp-trace cannot read it");
        }
        Ok(Field {
            offset: bits / 8,
            size: self.size_of(ty),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a BTF blob by hand so the parser is tested without a kernel.
    pub struct Builder {
        strings: Vec<u8>,
        types: Vec<u8>,
        next_id: u32,
    }

    impl Builder {
        pub fn new() -> Self {
            Builder {
                strings: vec![0],
                types: vec![],
                next_id: 1,
            }
        }
        pub fn string(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }
        fn header(&mut self, name: &str, kind: u32, vlen: u32, kflag: bool, size: u32) -> u32 {
            let n = self.string(name);
            let info = vlen | (kind << 24) | ((kflag as u32) << 31);
            for v in [n, info, size] {
                self.types.extend_from_slice(&v.to_le_bytes());
            }
            self.next_id += 1;
            self.next_id - 1
        }
        pub fn int(&mut self, name: &str, size: u32) -> u32 {
            let id = self.header(name, KIND_INT, 0, false, size);
            self.types.extend_from_slice(&(size * 8).to_le_bytes());
            id
        }
        pub fn ptr(&mut self, to: u32) -> u32 {
            self.header("", KIND_PTR, 0, false, to)
        }
        pub fn typedef(&mut self, name: &str, to: u32) -> u32 {
            self.header(name, KIND_TYPEDEF, 0, false, to)
        }
        /// members: (name, type, bit offset)
        pub fn strukt(
            &mut self,
            name: &str,
            size: u32,
            union: bool,
            members: &[(&str, u32, u32)],
        ) -> u32 {
            let kind = if union { KIND_UNION } else { KIND_STRUCT };
            let id = self.header(name, kind, members.len() as u32, true, size);
            for (mname, ty, bits) in members {
                let n = self.string(mname);
                for v in [n, *ty, *bits] {
                    self.types.extend_from_slice(&v.to_le_bytes());
                }
            }
            id
        }
        pub fn enumeration(&mut self, name: &str, values: &[(&str, i32)]) -> u32 {
            let id = self.header(name, KIND_ENUM, values.len() as u32, false, 4);
            for (n, v) in values {
                let n = self.string(n);
                self.types.extend_from_slice(&n.to_le_bytes());
                self.types.extend_from_slice(&v.to_le_bytes());
            }
            id
        }
        /// A function prototype taking `params` (unnamed) arguments of type `arg`.
        pub fn func_proto(&mut self, params: u32, arg: u32) -> u32 {
            let id = self.header("", KIND_FUNC_PROTO, params, false, 0);
            for _ in 0..params {
                self.types.extend_from_slice(&0u32.to_le_bytes());
                self.types.extend_from_slice(&arg.to_le_bytes());
            }
            id
        }
        pub fn var(&mut self, name: &str, ty: u32) -> u32 {
            let id = self.header(name, KIND_VAR, 0, false, ty);
            self.types.extend_from_slice(&1u32.to_le_bytes()); // global linkage
            id
        }
        /// vars: (VAR type id, byte offset, size)
        pub fn datasec(&mut self, name: &str, size: u32, vars: &[(u32, u32, u32)]) -> u32 {
            let id = self.header(name, KIND_DATASEC, vars.len() as u32, false, size);
            for (ty, off, len) in vars {
                for v in [*ty, *off, *len] {
                    self.types.extend_from_slice(&v.to_le_bytes());
                }
            }
            id
        }
        pub fn func(&mut self, name: &str, proto: u32) -> u32 {
            self.header(name, KIND_FUNC, 0, false, proto)
        }
        pub fn build(&self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&BTF_MAGIC.to_le_bytes());
            out.extend_from_slice(&[1, 0]);
            for v in [
                24u32,
                0,
                self.types.len() as u32,
                self.types.len() as u32,
                self.strings.len() as u32,
            ] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    fn sample() -> Btf {
        let mut b = Builder::new();
        let u32t = b.int("unsigned int", 4);
        let u16t = b.int("short unsigned int", 2);
        let ns = b.strukt(
            "ns_common",
            16,
            false,
            &[("ns_type", u32t, 0), ("inum", u32t, 64)],
        );
        let net = b.strukt("net", 64, false, &[("ns", ns, 128)]);
        let netp = b.ptr(net);
        let pnet = b.strukt("", 8, false, &[("net", netp, 0)]);
        let pnet_t = b.typedef("possible_net_t", pnet);
        let dev = b.strukt(
            "net_device",
            256,
            false,
            &[("name", u32t, 0), ("nd_net", pnet_t, 8 * 200)],
        );
        let devp = b.ptr(dev);
        let inner = b.strukt("", 16, false, &[("next", devp, 0), ("dev", devp, 64)]);
        let un = b.strukt("", 16, true, &[("", inner, 0), ("rbnode", u32t, 0)]);
        b.strukt(
            "sk_buff",
            232,
            false,
            &[
                ("", un, 0),
                ("mac_header", u16t, 8 * 190),
                ("bits", u32t, 8 * 192 + 3),
            ],
        );
        Btf::parse(&b.build()).unwrap()
    }

    /// Per-CPU variables are found by name in `.data..percpu` only, at their section offset.
    #[test]
    fn percpu_variables_are_found_in_their_section() {
        let mut b = Builder::new();
        let int = b.int("int", 4);
        let count = b.var("__preempt_count", int);
        let rq = b.var("runqueues", int);
        let other = b.var("elsewhere", int);
        b.datasec(
            ".data..percpu",
            200_000,
            &[(count, 86064, 4), (rq, 195456, 4)],
        );
        b.datasec(".data", 100, &[(other, 8, 4)]);
        let btf = Btf::parse(&b.build()).unwrap();
        assert_eq!(btf.percpu_var("__preempt_count"), Some(86064));
        assert_eq!(btf.percpu_var("runqueues"), Some(195456));
        assert_eq!(btf.percpu_var("elsewhere"), None);
        assert_eq!(btf.percpu_var("absent"), None);
    }

    #[test]
    fn finds_members_through_anonymous_unions_and_typedefs() {
        let btf = sample();
        assert_eq!(
            btf.field("sk_buff", "dev").unwrap(),
            Field { offset: 8, size: 8 }
        );
        assert_eq!(
            btf.field("sk_buff", "mac_header").unwrap(),
            Field {
                offset: 190,
                size: 2
            }
        );
        assert_eq!(
            btf.field("net_device", "nd_net.net").unwrap(),
            Field {
                offset: 200,
                size: 8
            }
        );
        assert_eq!(
            btf.field("net", "ns.inum").unwrap(),
            Field {
                offset: 24,
                size: 4
            }
        );
    }

    #[test]
    fn reports_missing_fields_and_bitfields() {
        let btf = sample();
        let e = btf.field("sk_buff", "nope").unwrap_err().to_string();
        assert!(e.contains("no field sk_buff.nope"), "{e}");
        assert!(btf
            .field("nope", "x")
            .unwrap_err()
            .to_string()
            .contains("struct nope"));
        assert!(btf
            .field("sk_buff", "bits")
            .unwrap_err()
            .to_string()
            .contains("bitfield"));
        assert!(btf.field("sk_buff", "mac_header.x").is_err());
    }

    #[test]
    fn reads_enum_values() {
        let mut b = Builder::new();
        b.enumeration(
            "skb_drop_reason",
            &[
                ("SKB_DROP_REASON_NOT_SPECIFIED", 2),
                ("SKB_DROP_REASON_NEIGH_FAILED", 58),
            ],
        );
        let btf = Btf::parse(&b.build()).unwrap();
        assert_eq!(
            btf.enum_value("skb_drop_reason", "SKB_DROP_REASON_NEIGH_FAILED"),
            Some(58)
        );
        assert_eq!(btf.enum_value("skb_drop_reason", "NOPE"), None);
        assert_eq!(
            btf.enum_value("other", "SKB_DROP_REASON_NEIGH_FAILED"),
            None
        );
    }

    #[test]
    fn finds_functions() {
        let mut b = Builder::new();
        let u64t = b.int("long long unsigned int", 8);
        let f = b.func_proto(2, u64t);
        b.func("arp_solicit", f);
        let p = b.ptr(f);
        b.typedef("btf_trace_consume_skb", p);
        let btf = Btf::parse(&b.build()).unwrap();
        assert!(btf.has_func("arp_solicit"));
        // A typedef of the same name is not a function.
        assert!(!btf.has_func("btf_trace_consume_skb"));
        assert!(!btf.has_func("consume_skb"));
    }

    #[test]
    fn running_kernel_has_arp_solicit() {
        // What the fentry path attaches to; a kernel without it fails that path's precheck.
        let Ok(btf) = Btf::from_sys_fs() else { return };
        assert!(btf.has_func("arp_solicit"));
    }

    #[test]
    fn rejects_garbage() {
        assert!(Btf::parse(b"").is_err());
        assert!(Btf::parse(&[0u8; 64]).is_err());
        let mut blob = Builder::new().build();
        blob.truncate(10);
        assert!(Btf::parse(&blob).is_err());
    }
}
