//! Harness for the end-to-end tests: the real `arp-trace` binary, the real kernel, real
//! network namespaces.
//!
//! Everything created here lives in throw-away network namespaces named
//! `at<pid>x<counter><role>`; nothing is created in the root namespace. Namespaces are
//! deleted by [`Netns`]'s `Drop`, also when a test panics.
//!
//! The modules split the harness by role; the test files import all of it with
//! `use arp_trace_e2e::*;`, so whatever they use is re-exported here. `cargo xtask vm` puts
//! the programs the harness starts into its guests, found by their literal name as
//! `Command::new`'s argument in any source here: name a new tool literally.

mod commands;
mod helper;
mod json;
mod namespaces;
mod piped;
mod scrape;
mod scratch;
mod timing;
mod topologies;
mod tracer;

use std::sync::atomic::{AtomicU32, Ordering};

pub use serde_json::{json, Value};

pub use commands::{
    arp_trace, describe, ip, jq, jq_over, no_panic, provisioned_tool, refused, run_to_completion,
    run_unprivileged, run_with_caps, venv_tool, workspace, Exe, Finished,
};
pub use helper::{helper_main, Helper, HELPER_ENTRY, HELPER_ENV, HELPER_PAYLOAD};
pub use json::{
    assert_fields, assert_frame_consistent, from_ns, is_change_to, is_mac, is_received, is_reply,
    is_request, parse_json_lines, s, time_of_day_secs,
};
pub use namespaces::{bridge_port, in_netns, send_udp_in, udp, veth, veth6, Netns};
pub use piped::PipedTracer;
pub use scrape::{http_get, sample, scrape, wait_for_sample};
pub use scratch::{write_trace, Scratch, Tmpfs};
pub use timing::{scaled, timeout_scale, EVENT_TIMEOUT, EXIT_TIMEOUT, READY_TIMEOUT};
pub use topologies::{
    lone, lone_ipv4_only, Routed, Seed, Switch, C3_IP, C5_IP, CLIENT_IP, HOST_IP, ROUTER_IN_IP,
    ROUTER_OUT_IP, SRV_ETH3_IP, SRV_ETH5_IP,
};
pub use tracer::{bin, parse_counts, Counts, Tracer};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A number no other call in this process gets: makes namespace and file names unique.
fn next_id() -> u32 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}
