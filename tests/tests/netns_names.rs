//! Namespace names of namespaces that come and go while the tracer runs.
//!
//! Namespace naming edge cases: inode reuse after deletion, and names of namespaces created
//! moments apart.

use std::thread::sleep;
use std::time::{Duration, Instant};

use arp_trace_e2e::*;

/// The first ARP event of a namespace created less than 200 ms after the tracer last
/// rescanned /run/netns (triggered by another new namespace) comes out with
/// `netns_name: null`: `NetnsNames::name` rate-limits rescans and gives up instead of
/// rescanning for a named namespace it has never seen.
#[test]
fn first_event_of_a_new_namespace_is_named() {
    let t = Tracer::start(&["--json"]);
    let x = lone("nx");
    x.send_udp(None, udp("198.51.100.99"));
    let x_ino = x.inode();
    // The event from x made the tracer rescan /run/netns; y is born right after.
    // Matched by target too: a namespace another test just deleted may have had the same
    // inode, and its last request can still be on its way.
    let from = |ino: u64, target: &'static str| {
        move |v: &Value| v["netns"].as_u64() == Some(ino) && v["target_ip"] == target
    };
    t.wait_for(from(x_ino, "198.51.100.99"), EVENT_TIMEOUT);
    let y = lone("ny");
    y.send_udp(None, udp("198.51.100.98"));
    let y_ino = y.inode();
    let evs = t.wait_for(from(y_ino, "198.51.100.98"), EVENT_TIMEOUT);
    assert_eq!(
        evs[0]["netns_name"],
        y.name(),
        "first event from {} (inode {y_ino}): {}",
        y.name(),
        evs[0]
    );
}

/// Namespace inodes are recycled (the kernel hands out the lowest free number). The tracer
/// caches inode -> name and only rescans for unknown inodes, so a namespace that gets the
/// inode of a deleted one is reported under the deleted namespace's name, forever.
#[test]
fn reused_inode_gets_the_new_name() {
    let t = Tracer::start(&["--json"]);
    let a = lone("ra");
    let ino = a.inode();
    let a_name = a.name().to_string();
    a.send_udp(None, udp("198.51.100.99"));
    t.wait_for(
        |v| v["netns"].as_u64() == Some(ino) && v["netns_name"] == a_name.as_str(),
        EVENT_TIMEOUT,
    );
    // A queued datagram (waiting for the ARP answer) pins the namespace; drop it.
    a.flush_neigh();
    drop(a);

    // The inode is freed asynchronously once the namespace is torn down; keep creating
    // namespaces until one gets it (parallel tests may take it first).
    let deadline = Instant::now() + Duration::from_secs(15);
    let b = loop {
        let b = lone("rb");
        if b.inode() == ino {
            break b;
        }
        drop(b);
        if Instant::now() >= deadline {
            eprintln!("inode {ino} was not reused within 15 s; inconclusive");
            return;
        }
        sleep(Duration::from_millis(100));
    };
    // A target of its own: the other test's namespaces use .98 and .99.
    b.send_udp(None, udp("198.51.100.97"));
    let evs = t.wait_for(
        |v| v["netns"].as_u64() == Some(ino) && v["target_ip"] == "198.51.100.97",
        EVENT_TIMEOUT,
    );
    assert_eq!(
        evs[0]["netns_name"],
        b.name(),
        "{} (inode {ino}, formerly {a_name}): {}",
        b.name(),
        evs[0]
    );
}
