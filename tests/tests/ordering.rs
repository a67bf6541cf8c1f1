//! Events leave arp-trace in the order the kernel sent the frames, even though a request
//! waits for its trigger and neighbour records and a veth peer answers at once.

use arp_trace_e2e::*;

#[test]
fn request_is_shown_before_the_reply_it_caused() {
    let seed = Seed::new();
    let (srv, c3) = (&seed.srv, &seed.c3);
    let t = Tracer::start(&["--json", "--netns", srv.name(), "--netns", c3.name()]);
    for round in 0..3 {
        srv.flush_neigh();
        c3.flush_neigh();
        srv.send_udp(None, udp(C3_IP));
        let evs = t.wait_for_n(
            |v| is_reply(v) && from_ns(v, c3) && v["target_ip"] == SRV_ETH3_IP,
            round + 1,
            EVENT_TIMEOUT,
        );
        assert_eq!(evs.len(), round + 1);
    }
    let all = t.json();
    let positions = |pred: &dyn Fn(&serde_json::Value) -> bool| -> Vec<usize> {
        all.iter()
            .enumerate()
            .filter(|(_, v)| pred(v))
            .map(|(i, _)| i)
            .collect()
    };
    let requests = positions(&|v| is_request(v) && from_ns(v, srv) && v["target_ip"] == C3_IP);
    let replies = positions(&|v| is_reply(v) && from_ns(v, c3) && v["target_ip"] == SRV_ETH3_IP);
    assert_eq!(requests.len(), 3, "{all:#?}");
    assert_eq!(replies.len(), 3, "{all:#?}");
    for (rq, rp) in requests.iter().zip(&replies) {
        assert!(
            rq < rp,
            "request #{rq} shown after its reply #{rp}: {all:#?}"
        );
    }
    // Times never go backwards in the stream.
    let times: Vec<f64> = all.iter().map(|v| time_of_day_secs(s(v, "time"))).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    let (status, _, stderr) = t.stop();
    assert!(status.success(), "exit {}: {stderr}", describe(&status));
}
