//! Replication, failover, catch-up, concurrent bookings and peer authentication.

use crate::harness::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_replicate_writes_and_every_node_reads_them() {
    replicate_and_read(PeerPort::Shared).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_with_their_own_peer_ports_replicate_writes_and_every_node_reads_them() {
    replicate_and_read(PeerPort::Separate).await;
}

async fn replicate_and_read(peer_port: PeerPort) {
    let c = Cluster::start_with(3, &[], peer_port).await;
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let follower = *c.alive().iter().find(|i| **i != leader).unwrap();
    // A write sent to a follower is forwarded (to the leader's peer address) and answered like
    // on one node; the answer names the leader by its peer address and its id.
    let r = c.put(follower, "/v1/musicians/m-1", &musician("m-1")).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        r.headers()["x-mussikon-leader"].to_str().unwrap(),
        c.nodes[&leader].peer_addr
    );
    assert_eq!(
        r.headers()["x-mussikon-leader-id"].to_str().unwrap(),
        leader.to_string()
    );
    let r = c.put(follower, "/v1/musicians/m-1", &musician("m-1")).await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "a replace is 200 as on one node"
    );
    // Linearizable (default) reads from every node see it at once.
    for id in [1, 2, 3] {
        let r = c.get(id, "/v1/musicians/m-1").await;
        assert_eq!(r.status(), StatusCode::OK, "node {id}");
        let r = c.get(id, "/v1/musicians/m-1?consistency=leader").await;
        assert_eq!(r.status(), StatusCode::OK, "node {id}, leader read");
    }
    let r = c.get(1, "/v1/musicians/m-1?consistency=sometimes").await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Refusals keep their single-node status codes through forwarding.
    let r = c
        .http
        .post(c.url(follower, "/v1/gigs/nope/bookings"))
        .json(&json!({"slot": 0, "musician_id": "m-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // The status lists three voters with one leader.
    let s = c.status(leader).await.unwrap();
    let roles: Vec<&str> = s["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles.iter().filter(|r| **r == "leader").count(), 1, "{s}");
    assert_eq!(roles.len(), 3, "{s}");
    // Each at its peer address.
    for m in s["members"].as_array().unwrap() {
        let id = m["id"].as_u64().unwrap();
        assert_eq!(m["addr"], c.nodes[&id].peer_addr.as_str(), "{s}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn peer_rpcs_without_the_cluster_secret_or_for_another_node_are_refused_and_change_nothing() {
    let c = Cluster::start(3, &[]).await;
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let before = c.status(leader).await.unwrap();
    for rpc in ["append", "vote", "write", "snapshot", "members"] {
        let r = c
            .http
            .post(c.url(leader, &format!("/raft/{rpc}")))
            .body(vec![1u8, 2, 3])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{rpc}");
        let r = c
            .http
            .post(c.url(leader, &format!("/raft/{rpc}")))
            .header("x-mussikon-cluster-secret", "wrong-secret-wrong-secret")
            .body(vec![1u8, 2, 3])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{rpc}");
    }
    // With the secret but for another node (one this node replaced at its address): 404,
    // before the body is looked at.
    for rpc in ["append", "vote", "write", "snapshot", "members"] {
        let r = c
            .http
            .post(c.url(leader, &format!("/raft/{rpc}")))
            .header("x-mussikon-cluster-secret", SECRET)
            .header("x-mussikon-to-node-id", "99")
            .body(vec![1u8, 2, 3])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{rpc}");
        let body = r.text().await.unwrap();
        assert!(
            body.contains(&format!("this is node {leader}, not node 99")),
            "{body}"
        );
    }
    // Refused cheaply: 64 MiB bodies streamed at each RPC without the secret are answered 401
    // before they are read, and the node's memory does not grow by what was sent.
    const MIB: usize = 1024 * 1024;
    let rss_before = c.rss(leader);
    let chunk = bytes::Bytes::from(vec![7u8; MIB]);
    for rpc in ["append", "vote", "write", "snapshot", "members"] {
        let chunks = std::iter::repeat_n(chunk.clone(), 64).map(Ok::<_, std::io::Error>);
        let r = c
            .http
            .post(c.url(leader, &format!("/raft/{rpc}")))
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                chunks,
            )))
            .send()
            .await;
        // The 401 is sent before the body is read; the client may see it, or see the connection
        // closed under the rest of its upload. Either way the node did not take the body.
        match r {
            Ok(r) => assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{rpc}, streamed"),
            Err(e) => eprintln!("{rpc}: the upload was cut: {e}"),
        }
    }
    let rss_after = c.rss(leader);
    let grown = rss_after.saturating_sub(rss_before) as usize;
    eprintln!("leader RSS {rss_before} -> {rss_after} bytes after 5 × 64 MiB refused");
    assert!(grown < 32 * MIB, "the node grew by {grown} bytes");
    let after = c.status(leader).await.unwrap();
    assert_eq!(before["term"], after["term"]);
    assert_eq!(before["last_log_index"], after["last_log_index"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_leader_elects_another_and_loses_no_acknowledged_write() {
    fail_over(PeerPort::Shared).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_their_own_peer_ports_killing_the_leader_elects_another_and_loses_no_write() {
    fail_over(PeerPort::Separate).await;
}

async fn fail_over(peer_port: PeerPort) {
    let mut c = Cluster::start_with(3, &[], peer_port).await;
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let mut acked = Vec::new();
    for i in 0..20 {
        let id = format!("m-{i}");
        let via = c.alive()[i % 3];
        let r = c
            .put(via, &format!("/v1/musicians/{id}"), &musician(&id))
            .await;
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        assert_eq!(
            status,
            StatusCode::CREATED,
            "write {i} via node {via}: {body}"
        );
        acked.push(id);
    }
    c.sigkill(leader);
    let rest = c.alive();
    let new_leader = c.wait_leader(&rest).await;
    assert_ne!(new_leader, leader);
    for i in 20..40 {
        let id = format!("m-{i}");
        let via = rest[i % 2];
        let r = c
            .put(via, &format!("/v1/musicians/{id}"), &musician(&id))
            .await;
        assert_eq!(r.status(), StatusCode::CREATED, "write {i} after failover");
        acked.push(id);
    }
    for id in &rest {
        for m in &acked {
            let r = c.get(*id, &format!("/v1/musicians/{m}")).await;
            assert_eq!(r.status(), StatusCode::OK, "{m} on node {id}");
        }
    }
    // The old leader comes back as a follower and catches up.
    c.restart(leader).await;
    c.wait_converged().await;
    for m in &acked {
        let r = c
            .get(leader, &format!("/v1/musicians/{m}?consistency=stale"))
            .await;
        assert_eq!(r.status(), StatusCode::OK, "{m} on the restarted node");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follower_down_during_writes_catches_up_from_a_snapshot() {
    let mut c = Cluster::start(
        3,
        &[
            "--set",
            "cluster.snapshot_logs=40",
            "--set",
            "cluster.keep_logs=5",
        ],
    )
    .await;
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let down = *c.alive().iter().find(|i| **i != leader).unwrap();
    c.sigkill(down);
    let n = 300;
    for i in 0..n {
        let id = format!("m-{i}");
        let r = c
            .put(leader, &format!("/v1/musicians/{id}"), &musician(&id))
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    // The leader has snapshotted and purged its log past what the follower holds.
    let snap_dir = c.nodes[&leader].dir.join("raft/snapshots");
    assert!(
        std::fs::read_dir(&snap_dir).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".snap")),
        "no snapshot in {}",
        snap_dir.display()
    );
    c.restart(down).await;
    let target = c.status(leader).await.unwrap()["applied_index"]
        .as_u64()
        .unwrap();
    c.wait_applied(down, target).await;
    for i in 0..n {
        let r = c
            .get(down, &format!("/v1/musicians/m-{i}?consistency=stale"))
            .await;
        assert_eq!(r.status(), StatusCode::OK, "m-{i} on the restarted node");
    }
    // And it takes part again: a write through it succeeds.
    let r = c
        .put(down, "/v1/musicians/m-last", &musician("m-last"))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_bookings_of_one_musician_and_date_through_all_nodes_succeed_once() {
    let c = Cluster::start(3, &[]).await;
    c.wait_leader(&[1, 2, 3]).await;
    let r = c.put(1, "/v1/musicians/m-1", &musician("m-1")).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    for g in 0..6 {
        let id = format!("g-{g}");
        let r = c
            .put(1, &format!("/v1/gigs/{id}"), &gig(&id, "2026-12-05"))
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let mut tasks = Vec::new();
    for g in 0..6u64 {
        let url = c.url(1 + g % 3, &format!("/v1/gigs/g-{g}/bookings"));
        let http = c.http.clone();
        tasks.push(tokio::spawn(async move {
            http.post(url)
                .json(&json!({"slot": 0, "musician_id": "m-1"}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    let won = codes.iter().filter(|s| **s == StatusCode::CREATED).count();
    let lost = codes.iter().filter(|s| **s == StatusCode::CONFLICT).count();
    assert_eq!((won, lost), (1, 5), "{codes:?}");
    let m: Value = c.get(3, "/v1/musicians/m-1").await.json().await.unwrap();
    assert_eq!(m["booked"].as_array().unwrap().len(), 1, "{m}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bulk_import_through_a_follower_is_replicated_like_any_write() {
    let c = Cluster::start(3, &[]).await;
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let follower = *c.alive().iter().find(|i| **i != leader).unwrap();
    let body: String = ["b-1", "b-2", "b-3"]
        .iter()
        .map(|id| format!("{}\n", musician(id)))
        .collect();
    let r = c
        .http
        .post(c.url(follower, "/v1/musicians/bulk"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let report: Value = r.json().await.unwrap();
    assert_eq!(report["accepted"], 3, "{report}");
    // Before the fix the import wrote the follower's engine directly, ahead of the log, and
    // the next replicated command there was refused as already applied (500).
    let r = c
        .put(follower, "/v1/musicians/after", &musician("after"))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    c.wait_converged().await;
    for id in [1, 2, 3] {
        for m in ["b-1", "b-2", "b-3", "after"] {
            let r = c
                .get(id, &format!("/v1/musicians/{m}?consistency=stale"))
                .await;
            assert_eq!(r.status(), StatusCode::OK, "{m} on node {id}");
        }
    }
}

/// Group commit and batched forwarding: many writes at once through every node, so the leader
/// packs them into shared entries and followers forward them in shared requests. Each writer
/// must get its own answer, and nothing may be lost or doubled.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writes_through_every_node_each_get_their_own_answer_and_none_is_lost() {
    let c = Cluster::start(3, &[]).await;
    c.wait_leader(&[1, 2, 3]).await;
    let r = c.put(1, "/v1/musicians/rated", &musician("rated")).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let mut tasks = Vec::new();
    for i in 0..90u64 {
        let (http, via) = (c.http.clone(), 1 + i % 3);
        let put = c.url(via, &format!("/v1/musicians/c-{i}"));
        let rate = c.url(via, "/v1/musicians/rated/ratings");
        let body = musician(&format!("c-{i}"));
        tasks.push(tokio::spawn(async move {
            let created = http.put(put).json(&body).send().await.unwrap();
            let (status, etag) = (created.status(), created.headers().get("etag").cloned());
            let answer: Value = created.json().await.unwrap();
            let rated = http
                .post(rate)
                .json(&json!({"stars": 1 + i % 5}))
                .send()
                .await
                .unwrap()
                .status();
            (i, status, etag, answer, rated)
        }));
    }
    for t in tasks {
        let (i, status, etag, answer, rated) = t.await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "c-{i}: {answer}");
        assert_eq!(
            answer["musician"]["id"],
            format!("c-{i}"),
            "c-{i} got {answer}"
        );
        assert!(etag.is_some(), "c-{i} has no ETag");
        assert!(rated.is_success(), "rating {i}: {rated}");
    }
    c.wait_converged().await;
    for id in [1, 2, 3] {
        let m: Value = c
            .get(id, "/v1/musicians/rated?consistency=stale")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(m["musician"]["rating"]["count"], 90, "node {id}: {m}");
        for i in [0u64, 44, 89] {
            let r = c
                .get(id, &format!("/v1/musicians/c-{i}?consistency=stale"))
                .await;
            assert_eq!(r.status(), StatusCode::OK, "c-{i} on node {id}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_forwarded_and_a_read_index_asked_by_a_follower_join_the_clients_trace_on_the_leader(
) {
    use crate::otlp::{attribute, hex, ids, Collector};
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    let mut collector = Collector::start().await;
    let endpoint = format!("tracing.otlp_endpoint={}", collector.base);
    let c = Cluster::start(3, &["--set", &endpoint]).await;
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let follower = *c.alive().iter().find(|i| **i != leader).unwrap();
    let caller = "00-5bf92f3577b34da6a3ce929d0e0e4736-10f067aa0ba902b7-01";
    let r = c
        .http
        .put(c.url(follower, "/v1/musicians/m-traced"))
        .header("traceparent", caller)
        .json(&musician("m-traced"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let (trace, follower_span) = ids(r.headers()["traceparent"].to_str().unwrap());
    assert_eq!(trace, "5bf92f3577b34da6a3ce929d0e0e4736");

    let mut seen = Vec::new();
    // The follower's own request span, under the caller's.
    let on_follower = collector
        .wait_for(DEADLINE, &mut seen, |s| {
            hex(&s.span.span_id) == follower_span
        })
        .await
        .expect("the follower's request span was not exported");
    assert_eq!(
        hex(&seen[on_follower].span.parent_span_id),
        "10f067aa0ba902b7"
    );
    // The leader's span for the forwarded write: the same trace, under the follower's span.
    let on_leader = collector
        .wait_for(DEADLINE, &mut seen, |s| {
            hex(&s.span.trace_id) == trace && hex(&s.span.parent_span_id) == follower_span
        })
        .await
        .expect("the leader exported no span under the follower's request span");
    let span = &seen[on_leader].span;
    assert_eq!(span.name, "POST /raft/write", "a lone forwarded write");
    assert_eq!(
        attribute(span, "http.response.status_code"),
        Some(Any::IntValue(200))
    );
    assert_ne!(span.span_id, seen[on_follower].span.span_id);

    // A linearizable read on the follower asks the leader for its read index: that question
    // joins the reader's trace too.
    let reader = "00-6bf92f3577b34da6a3ce929d0e0e4736-20f067aa0ba902b7-01";
    let r = c
        .http
        .get(c.url(follower, "/v1/musicians/m-traced"))
        .header("traceparent", reader)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (trace, read_span) = ids(r.headers()["traceparent"].to_str().unwrap());
    let on_leader = collector
        .wait_for(DEADLINE, &mut seen, |s| {
            hex(&s.span.trace_id) == trace && hex(&s.span.parent_span_id) == read_span
        })
        .await
        .expect("the leader exported no span for the read index question");
    assert_eq!(seen[on_leader].span.name, "POST /raft/read-index");
}

/// Ratings carrying an `Idempotency-Key`, sent by 16 writers through the two followers while
/// the leader is SIGKILLed: every one is answered 200, none 503 "outcome unknown" (a follower
/// submits a keyed write whose forwarded outcome is unknown again), and none is applied twice:
/// the counts the answers name are exactly 1..=n, and the musician ends with n ratings.
#[tokio::test(flavor = "multi_thread")]
async fn keyed_writes_in_flight_when_the_leader_dies_are_answered_once_each() {
    let mut c = Cluster::start(3, &[]).await;
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let followers: Vec<u64> = [1, 2, 3].into_iter().filter(|n| *n != leader).collect();
    let r = c
        .put(followers[0], "/v1/musicians/rated", &musician("rated"))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answered = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let mut writers = Vec::new();
    for w in 0..16 {
        let url = |via: u64| c.url(via, "/v1/musicians/rated/ratings");
        let urls = [url(followers[0]), url(followers[1])];
        let (http, stop, answered) = (c.http.clone(), stop.clone(), answered.clone());
        writers.push(tokio::spawn(async move {
            // (key, status, count named by the answer)
            let mut seen: Vec<(String, StatusCode, Option<i64>)> = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("w{w}-{i}");
                let r = http
                    .post(&urls[i % 2])
                    .header("idempotency-key", &key)
                    .json(&serde_json::json!({"stars": 4}))
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                let body: serde_json::Value = r.json().await.unwrap_or_default();
                seen.push((key, status, body["count"].as_i64()));
                answered.add_permits(1);
                i += 1;
            }
            seen
        }));
    }
    // Kill the leader with writes flowing, then let every writer get answers after it.
    let _ = answered.acquire_many(200).await.unwrap();
    c.sigkill(leader);
    let rest = c.alive();
    c.wait_leader(&rest).await;
    let _ = answered.acquire_many(16 * 20).await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut all = Vec::new();
    for w in writers {
        all.extend(w.await.unwrap());
    }

    let failed: Vec<_> = all
        .iter()
        .filter(|(_, s, _)| *s != StatusCode::OK)
        .collect();
    assert!(
        failed.is_empty(),
        "keyed writes not answered 200: {failed:?}"
    );
    let mut counts: Vec<i64> = all.iter().map(|(_, _, n)| n.unwrap()).collect();
    counts.sort_unstable();
    let n = all.len() as i64;
    assert_eq!(
        counts,
        (1..=n).collect::<Vec<_>>(),
        "each rating applied once"
    );
    let r = c
        .get(rest[0], "/v1/musicians/rated?consistency=linearizable")
        .await;
    let m: serde_json::Value = r.json().await.unwrap();
    assert_eq!(m["musician"]["rating"]["count"].as_i64(), Some(n), "{m}");
    // The case the test is for happened: a write was in flight to the dead leader.
    let mut resubmitted = 0.0;
    for id in &rest {
        resubmitted += c
            .metric(*id, "mussikon_raft_writes_resubmitted_total")
            .await;
    }
    assert!(resubmitted >= 1.0, "no write was in flight at the kill");
}
