//! The kernel side: which hooks exist and what they need ([`hooks`]), reading the running
//! kernel's BTF and symbols, loading and attaching the BPF programs ([`loader`]) with the
//! capabilities that takes ([`privileges`]), and decoding what they write into the ring buffer
//! ([`ring`], and [`ndisc`] for IPv6 neighbour discovery).

pub mod btf;
pub mod context;
pub mod hooks;
pub mod kallsyms;
pub mod loader;
pub mod ndisc;
pub mod privileges;
pub mod ring;
