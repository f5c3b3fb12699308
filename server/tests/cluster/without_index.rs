//! A voter that keeps no search index (`--set index.enabled=false`): it replicates, votes and
//! serves reads by id like any member, answers searches and matches 421 problem+json naming
//! the setting (never an empty answer), while the nodes that index find what was written
//! through it; turned back on, it rebuilds its index from its store and searches again.

use crate::harness::*;
use reqwest::StatusCode;
use serde_json::Value;

const GUITARISTS: &str = "/v1/musicians/search?instrument=guitar&limit=100";

async fn found(c: &Cluster, id: u64) -> Vec<String> {
    let r = c.get(id, GUITARISTS).await;
    assert_eq!(r.status(), StatusCode::OK, "search on node {id}");
    let page: Value = r.json().await.unwrap();
    let mut ids: Vec<String> = page["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["musician"]["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn a_voter_without_a_search_index_replicates_and_sends_searches_elsewhere() {
    let mut c = Cluster::start(3, &[]).await;
    c.stop(3).await;
    c.restart_with(3, &["--set", "index.enabled=false"]).await;
    c.wait_converged().await;

    let mut written = write_musicians(&c, &[3, 1, 2], "m", 6).await;
    written.sort();
    let gig = gig("g-1", "2026-12-05");
    assert_eq!(
        c.put(3, "/v1/gigs/g-1", &gig).await.status(),
        StatusCode::CREATED
    );
    c.wait_converged().await;

    // Reads by id work on the index-less voter; searches and matches are sent elsewhere.
    assert_eq!(c.get(3, "/v1/musicians/m-0").await.status(), StatusCode::OK);
    for path in [GUITARISTS, "/v1/gigs/g-1/matches"] {
        let r = c.get(3, path).await;
        assert_eq!(r.status(), StatusCode::MISDIRECTED_REQUEST, "{path}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
        let problem: Value = r.json().await.unwrap();
        assert_eq!(problem["type"], "urn:mussikon:problem:no-search-index");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("index.enabled"),
            "{problem}"
        );
    }
    // The indexing nodes find every musician, those written through node 3 too.
    for id in [1, 2] {
        assert_eq!(found(&c, id).await, written, "node {id}");
        assert_eq!(
            c.get(id, "/v1/gigs/g-1/matches").await.status(),
            StatusCode::OK
        );
    }
    // The index-less node is ready: it is a full member.
    assert_eq!(c.get(3, "/health/ready").await.status(), StatusCode::OK);

    // Turned back on, node 3 builds its index from its store.
    c.stop(3).await;
    c.restart(3).await;
    c.wait_converged().await;
    assert_eq!(found(&c, 3).await, written);
}
