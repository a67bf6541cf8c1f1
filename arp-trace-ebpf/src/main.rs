//! eBPF programs of arp-trace. They only copy what they see into the ring buffer; all
//! decoding and reasoning happens in user space where it can be tested without a kernel.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// Built for the host only so `cargo clippy --workspace` works; the programs exist for BPF only.
#![cfg_attr(not(target_arch = "bpf"), allow(dead_code, unused_imports))]

mod context;
mod ndisc;
mod neigh_change;
mod neighbour;
mod receive;
mod shared;
mod transmit;
mod trigger;

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
