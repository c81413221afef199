//! The seat-map reads on real Postgres: precompressed bodies with entity
//! tags and 304s, the static layout, and availability as full bitmaps or
//! deltas that follow holds and releases, on two instances.

mod common;

use std::io::Read as _;

use base64::Engine as _;
use common::{Reply, TestApp, spawn_app_with};
use reqwest::StatusCode;
use serde_json::Value;

/// Availability rebuilt on every read, so each step sees the last change.
const FRESH: &[(&str, &str)] = &[("ONSALE__CORE__SEAT_CACHE_MS", "0")];

async fn raw(app_base: &str, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(format!("{app_base}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("a response")
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn bits(availability: &Value) -> Vec<bool> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(availability["free"].as_str().expect("a full availability"))
        .expect("base64");
    (0..bytes.len() * 8)
        .map(|i| bytes[i / 8] & (1 << (i % 8)) != 0)
        .collect()
}

async fn availability(app: &TestApp, base: &str, performance: i64, since: Option<&str>) -> Value {
    let path = match since {
        Some(since) => format!("/v1/performances/{performance}/availability?since={since}"),
        None => format!("/v1/performances/{performance}/availability"),
    };
    let reply = Reply::send(app.http.get(format!("{base}{path}"))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_seat_map_comes_compressed_with_an_entity_tag_and_a_304_when_unchanged() {
    let app = spawn_app_with(FRESH).await;
    let show = app.create_show(2, 10, 10_000, 4).await;
    let path = format!("/v1/performances/{}/seats", show.performance_id);

    let br = raw(&app.base, &path, &[("accept-encoding", "gzip, br")]).await;
    assert_eq!(br.status(), StatusCode::OK);
    assert_eq!(header(&br, "content-encoding"), "br");
    assert!(header(&br, "cache-control").starts_with("public"));
    assert_eq!(header(&br, "vary"), "Accept-Encoding");
    let etag = header(&br, "etag").to_owned();
    assert!(etag.starts_with('"') && etag.ends_with("-br\""), "{etag}");
    let mut json = Vec::new();
    brotli::Decompressor::new(&br.bytes().await.unwrap()[..], 4096)
        .read_to_end(&mut json)
        .unwrap();
    let map: Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(map["seats"].as_array().unwrap().len(), 20);
    assert_eq!(map["seats_available"], 20);

    let again = raw(
        &app.base,
        &path,
        &[("accept-encoding", "br"), ("if-none-match", &etag)],
    )
    .await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&again, "etag"), etag);
    assert!(again.bytes().await.unwrap().is_empty());

    let gzip = raw(&app.base, &path, &[("accept-encoding", "gzip")]).await;
    assert_eq!(header(&gzip, "content-encoding"), "gzip");
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&gzip.bytes().await.unwrap()[..])
        .read_to_end(&mut unzipped)
        .unwrap();
    assert_eq!(unzipped, json, "every coding carries the same map");

    let plain = Reply::send(app.http.get(format!("{}{path}", app.base))).await;
    assert!(plain.headers.get("content-encoding").is_none());
    assert_eq!(plain.body, map);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layout_lists_every_seat_once_as_runs_and_is_cached_for_a_day() {
    let app = spawn_app_with(FRESH).await;
    let show = app.create_show(3, 7, 10_000, 4).await;
    let path = format!("/v1/performances/{}/layout", show.performance_id);
    let reply = Reply::send(app.http.get(format!("{}{path}", app.base))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.headers["cache-control"].to_str().unwrap(),
        "public, max-age=86400"
    );
    let layout = reply.body;
    assert_eq!(layout["seats_total"], 21);
    let mut ids = Vec::new();
    let mut indices = Vec::new();
    let rows = layout["sections"][0]["rows"].as_array().unwrap();
    let labels: Vec<&str> = rows.iter().map(|r| r["row"].as_str().unwrap()).collect();
    assert_eq!(labels, ["1", "2", "3"], "rows in listed order");
    for row in rows {
        for run in row["runs"].as_array().unwrap() {
            for k in 0..run["count"].as_i64().unwrap() {
                ids.push(run["first_id"].as_i64().unwrap() + k);
                indices.push(run["first_index"].as_i64().unwrap() + k);
            }
        }
    }
    let mut sorted = show.seat_ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted, "every seat once, by index");
    assert_eq!(indices, (0..21).collect::<Vec<i64>>());
    let etag = reply.headers["etag"].to_str().unwrap().to_owned();
    let again = raw(&app.base, &path, &[("if-none-match", &etag)]).await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn availability_follows_holds_and_releases_as_deltas_with_the_same_versions_on_every_instance()
 {
    let app = spawn_app_with(FRESH).await;
    let twin = app.twin().await;
    let show = app.create_show(2, 10, 10_000, 4).await;
    let performance = show.performance_id;
    let first = availability(&app, &app.base, performance, None).await;
    assert_eq!(first["seats_available"], 20);
    assert!(bits(&first)[..20].iter().all(|b| *b));
    let v1 = first["version"].as_str().unwrap().to_owned();

    let pass = app.access_token(performance, "delta-fan").await;
    let held = app.hold(&pass, performance, &show.seat_ids[..2]).await;
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.body);
    let delta = availability(&app, &app.base, performance, Some(&v1)).await;
    assert!(delta.get("free").is_none(), "a delta, not the bitmap");
    assert_eq!(delta["since"], v1.as_str());
    assert_eq!(delta["taken"], serde_json::json!(&show.seat_ids[..2]));
    assert_eq!(delta["freed"], serde_json::json!([]));
    assert_eq!(delta["seats_available"], 18);
    let v2 = delta["version"].as_str().unwrap().to_owned();
    assert_ne!(v1, v2);

    // The twin never saw v1: it answers in full, with the same version.
    let on_twin = availability(&app, &twin, performance, Some(&v1)).await;
    assert_eq!(on_twin["version"], v2.as_str());
    assert!(!bits(&on_twin)[0] && !bits(&on_twin)[1] && bits(&on_twin)[2]);

    let reservation = held.body["reservation_id"].as_str().unwrap();
    let released = app.release(&pass.identity, reservation).await;
    assert_eq!(released.status, StatusCode::NO_CONTENT);
    let back = availability(&app, &app.base, performance, Some(&v2)).await;
    assert_eq!(back["freed"], serde_json::json!(&show.seat_ids[..2]));
    assert_eq!(
        back["version"],
        v1.as_str(),
        "the same seats, the same version"
    );

    let unknown = availability(&app, &app.base, performance, Some("0123456789abcdef")).await;
    assert!(
        unknown["free"].is_string(),
        "an unknown version gets the full bitmap"
    );
    let path = format!("/v1/performances/{performance}/availability");
    let current = raw(&app.base, &path, &[("if-none-match", &format!("\"{v1}\""))]).await;
    assert_eq!(current.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_performances_and_malformed_versions_are_problems() {
    let app = spawn_app_with(FRESH).await;
    for path in ["seats", "layout", "availability"] {
        let reply = app.get(&format!("/v1/performances/999999999/{path}")).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert!(reply.is_problem());
        let reply = app.get(&format!("/v1/performances/0/{path}")).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}");
    }
    let show = app.create_show(1, 2, 10_000, 2).await;
    for since in ["zz", "", "0123456789abcdef0"] {
        let reply = app
            .get(&format!(
                "/v1/performances/{}/availability?since={since}",
                show.performance_id
            ))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "since={since:?}");
        assert_eq!(reply.code(), "invalid_request");
    }
}
