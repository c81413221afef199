//! `--only seatmap`: the seat map of a large performance, its size on the
//! wire and its rate next to nginx serving the same bytes.
//!
//! One performance of `--seatmap-seats` seats (50,000: sections of 20 rows
//! of 50, four grades). Sizes, as core-service sends them (reqwest without
//! decompression, so the bytes are the body on the wire):
//! - the full map (`GET /v1/performances/{id}/seats`) with
//!   `Accept-Encoding: br`, `gzip` and none;
//! - the layout (`…/layout`) and a full availability (`…/availability`),
//!   with `br` and without;
//! - availability deltas (`…/availability?since=<version>`): after one hold
//!   of one seat, and after ten holds of four seats each (spread over the
//!   map), checking that `taken` lists exactly the seats held.
//!
//! Rates: wrk (`--seatmap-connections`, one thread) asks for the full map
//! with `Accept-Encoding: br`, from core-service and from nginx serving the
//! very bytes core-service sent (`nginx`), each phase after the machine
//! settles, nginx first; then the same with `If-None-Match` (304 on both
//! sides; nginx's own ETag on its side).

use std::{fmt::Write as _, path::Path, time::Duration};

use anyhow::{Context, Result, ensure};
use core_service::{
    api::CreateReservation,
    domain::{PerformanceId, SeatId},
};
use reqwest::{StatusCode, header};
use serde_json::Value;

use super::{
    Phase, Run,
    cpu::settle,
    nginx::{Nginx, Served},
    room,
    wrk::wrk,
};
use crate::setup;

/// Seats per section: 20 rows of [`setup::SEATS_PER_ROW`].
const SECTION_SEATS: u32 = 20 * setup::SEATS_PER_ROW;

/// Targets: compressed full map, bytes; one delta, bytes.
const MAP_TARGET: u64 = 150 * 1024;
const DELTA_TARGET: u64 = 2 * 1024;

/// Bytes of each answer, as sent.
#[derive(Debug, Clone, Default)]
pub(super) struct Sizes {
    /// Seats of the performance.
    pub(super) seats: u32,
    /// Full map: `br`, `gzip`, uncompressed.
    pub(super) map: [u64; 3],
    /// Layout: `br`, uncompressed.
    pub(super) layout: [u64; 2],
    /// Full availability: `br`, uncompressed.
    pub(super) availability: [u64; 2],
    /// Delta after one hold of one seat: `br`, uncompressed.
    pub(super) delta_one: [u64; 2],
    /// Delta after ten holds of four seats: `br`, uncompressed.
    pub(super) delta_few: [u64; 2],
    /// `Content-Encoding` of the `br` and `gzip` answers of the full map.
    pub(super) map_encodings: [String; 2],
}

/// One answer.
struct Fetched {
    status: StatusCode,
    body: Vec<u8>,
    header: reqwest::header::HeaderMap,
}

impl Fetched {
    fn header(&self, name: header::HeaderName) -> String {
        self.header
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    fn json(&self) -> Result<Value> {
        ensure!(self.status == StatusCode::OK, "answered {}", self.status);
        serde_json::from_slice(&self.body).context("not JSON")
    }
}

async fn fetch(
    http: &reqwest::Client,
    url: &str,
    encoding: Option<&str>,
    etag: Option<&str>,
) -> Result<Fetched> {
    let mut request = http.get(url);
    request = request.header(header::ACCEPT_ENCODING, encoding.unwrap_or("identity"));
    if let Some(etag) = etag {
        request = request.header(header::IF_NONE_MATCH, etag);
    }
    let response = request.send().await.with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let header = response.headers().clone();
    let body = response.bytes().await?.to_vec();
    Ok(Fetched {
        status,
        body,
        header,
    })
}

/// `[br, uncompressed]` body sizes of `url`, each answered 200.
async fn sizes(http: &reqwest::Client, url: &str) -> Result<[u64; 2]> {
    let br = fetch(http, url, Some("br"), None).await?;
    let plain = fetch(http, url, None, None).await?;
    ensure!(
        br.status == StatusCode::OK && plain.status == StatusCode::OK,
        "GET {url}: {} / {}",
        br.status,
        plain.status
    );
    Ok([br.body.len() as u64, plain.body.len() as u64])
}

/// The seat-map phases (see the module docs).
pub(super) async fn run(
    run: &Run<'_>,
    record: &mut impl FnMut(Phase),
    out: &mut Option<Sizes>,
) -> Result<()> {
    let (client, args) = (&run.client, run.args);
    let http = client.http();
    let seats = args.seatmap_seats;
    ensure!(
        seats.is_multiple_of(SECTION_SEATS),
        "--seatmap-seats must be a multiple of {SECTION_SEATS}"
    );
    let grades = [
        ("VIP", 165_000),
        ("R", 143_000),
        ("S", 121_000),
        ("A", 99_000),
    ];
    let count = seats / SECTION_SEATS;
    let sections = (0..count)
        .map(|i| {
            let (grade, price) = grades[(i * 4 / count.max(1)) as usize % grades.len()];
            setup::section(
                &format!("{}", 101 + i),
                grade,
                price,
                20,
                setup::SEATS_PER_ROW,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    eprintln!("bench: seat map, creating a performance of {seats} seats");
    let (performance, seat_ids) = setup::create_show(
        client,
        "loadtest bench seat map",
        "The Bytes",
        "Loopback Stadium",
        sections,
    )
    .await?;
    let base = format!("{}/v1/performances/{performance}", client.core_url());
    let map_url = format!("{base}/seats");

    let br = fetch(http, &map_url, Some("br"), None).await?;
    let gzip = fetch(http, &map_url, Some("gzip"), None).await?;
    let plain = fetch(http, &map_url, None, None).await?;
    plain.json().context("the full map")?;
    let mut sizes_found = Sizes {
        seats,
        map: [br.body.len(), gzip.body.len(), plain.body.len()].map(|n| n as u64),
        layout: sizes(http, &format!("{base}/layout")).await?,
        availability: sizes(http, &format!("{base}/availability")).await?,
        map_encodings: [
            br.header(header::CONTENT_ENCODING),
            gzip.header(header::CONTENT_ENCODING),
        ],
        ..Sizes::default()
    };
    ensure!(
        sizes_found.map_encodings[0] == "br",
        "the full map with Accept-Encoding: br came as {:?}",
        sizes_found.map_encodings[0]
    );

    // Deltas: one hold of one seat, then ten of four, by admitted fans.
    let event = performance.to_string();
    client.configure_room(&event, &room(20, 100_000.0)).await?;
    let fans = setup::enter_many(
        client,
        &run.issuer,
        &event,
        &format!("map-{}", run.run_id),
        11,
        true,
    )
    .await?;
    let performance_id = PerformanceId::new(performance)?;
    let stride = seat_ids.len() / 64;
    let mut next = (0..).map(|i: usize| seat_ids[(i * stride + 7) % seat_ids.len()]);
    let availability = format!("{base}/availability");
    let mut version = fetch(http, &availability, None, None)
        .await?
        .json()?
        .get("version")
        .cloned()
        .context("no version in the availability")?;
    for (round, holders) in [(0, &fans[..1]), (1, &fans[1..])] {
        let per_fan = if round == 0 { 1 } else { 4 };
        let mut held = Vec::new();
        for fan in holders {
            let ids: Vec<i64> = next.by_ref().take(per_fan).collect();
            let hold = CreateReservation::seats(
                performance_id,
                ids.iter()
                    .map(|id| SeatId::new(*id))
                    .collect::<Result<_, _>>()?,
            );
            client
                .as_fan(&fan.identity)
                .hold(&fan.token, &hold)
                .await
                .context("a hold for the availability delta")?;
            held.extend(ids);
        }
        let since = version_text(&version);
        let url = reqwest::Url::parse_with_params(&availability, [("since", &since)])?.to_string();
        held.sort_unstable();
        let delta = wait_for_delta(http, &url, &held).await?;
        let found = sizes(http, &url).await?;
        if round == 0 {
            sizes_found.delta_one = found;
        } else {
            sizes_found.delta_few = found;
        }
        version = delta.get("version").cloned().context("no version")?;
    }
    eprintln!("bench: seat map sizes (bytes): {sizes_found:?}");
    *out = Some(sizes_found);

    // Rates: the same bytes from nginx, then from core-service.
    let br = fetch(http, &map_url, Some("br"), None).await?;
    let etag = br.header(header::ETAG);
    ensure!(!etag.is_empty(), "the full map came without an ETag");
    let revalidated = fetch(http, &map_url, Some("br"), Some(&etag)).await?;
    ensure!(
        revalidated.status == StatusCode::NOT_MODIFIED,
        "If-None-Match with the map's own ETag answered {}",
        revalidated.status
    );
    let path = format!("/v1/performances/{performance}/seats");
    let nginx = Nginx::start(
        &run.work,
        &Served {
            path: &path,
            body: &br.body,
            content_type: &br.header(header::CONTENT_TYPE),
            content_encoding: "br",
            cache_control: &br.header(header::CACHE_CONTROL).replace('"', ""),
        },
    )
    .await?;
    let result = rates(run, record, &nginx, &map_url, &etag, br.body.len()).await;
    nginx.stop().await;
    result
}

/// The four wrk phases, nginx before core-service each time.
async fn rates(
    run: &Run<'_>,
    record: &mut impl FnMut(Phase),
    nginx: &Nginx,
    map_url: &str,
    etag: &str,
    bytes: usize,
) -> Result<()> {
    let http = run.client.http();
    let from_nginx = fetch(http, &nginx.url, Some("br"), None).await?;
    ensure!(
        from_nginx.body.len() == bytes && from_nginx.header(header::CONTENT_ENCODING) == "br",
        "nginx served {} bytes as {:?}, core-service {bytes} as br",
        from_nginx.body.len(),
        from_nginx.header(header::CONTENT_ENCODING)
    );
    let nginx_etag = from_nginx.header(header::ETAG);
    let nginx_304 = fetch(http, &nginx.url, Some("br"), Some(&nginx_etag)).await?;
    ensure!(
        nginx_304.status == StatusCode::NOT_MODIFIED,
        "nginx answered If-None-Match with {}",
        nginx_304.status
    );
    let connections = run.args.seatmap_connections;
    let seconds = run.args.seconds;
    let core = run.pids.get("core-service").copied();
    let full = script(&run.work, "seatmap-br", None)?;
    let nginx_cond = script(&run.work, "seatmap-304-nginx", Some(&nginx_etag))?;
    let core_cond = script(&run.work, "seatmap-304", Some(etag))?;
    for (name, url, script, pid) in [
        (
            "seat map br (nginx, same bytes)",
            nginx.url.as_str(),
            &full,
            None,
        ),
        ("seat map br (HTTP)", map_url, &full, core),
        (
            "seat map 304 (nginx, same file)",
            nginx.url.as_str(),
            &nginx_cond,
            None,
        ),
        ("seat map 304 (HTTP)", map_url, &core_cond, core),
    ] {
        settle(None).await;
        eprintln!("bench: wrk, {name}");
        record(wrk(name, url, script, connections, seconds, pid, None).await?);
    }
    Ok(())
}

/// A wrk script sending `Accept-Encoding: br` (and `If-None-Match`).
fn script(work: &Path, name: &str, etag: Option<&str>) -> Result<std::path::PathBuf> {
    let mut text = String::from("wrk.headers[\"Accept-Encoding\"] = \"br\"\n");
    if let Some(etag) = etag {
        let _ = writeln!(text, "wrk.headers[\"If-None-Match\"] = [[{etag}]]");
    }
    let path = work.join(format!("{name}.lua"));
    std::fs::write(&path, text)?;
    Ok(path)
}

/// A version as the `since` query parameter.
fn version_text(version: &Value) -> String {
    version
        .as_str()
        .map_or_else(|| version.to_string(), str::to_owned)
}

/// The delta at `url` once it lists exactly `held` (ascending) as taken
/// and nothing freed: the service answers from a snapshot up to a second
/// old, so the first answers may miss the latest holds. At most 5 s.
async fn wait_for_delta(http: &reqwest::Client, url: &str, held: &[i64]) -> Result<Value> {
    let mut last = Vec::new();
    for _ in 0..50 {
        let delta = fetch(http, url, None, None).await?.json()?;
        ensure!(
            delta.get("since").is_some(),
            "GET {url} answered a full availability, not a delta"
        );
        let mut taken = ids_of(&delta, "taken")?;
        taken.sort_unstable();
        if taken == held && ids_of(&delta, "freed")?.is_empty() {
            return Ok(delta);
        }
        last = taken;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("GET {url}: taken {last:?} after 5 s, the holds took {held:?}")
}

fn ids_of(delta: &Value, field: &str) -> Result<Vec<i64>> {
    delta
        .get(field)
        .and_then(Value::as_array)
        .with_context(|| format!("no {field} in the delta"))?
        .iter()
        .map(|v| v.as_i64().context("a seat id that is not a number"))
        .collect()
}

/// The Markdown of the sizes (a section of the generated block).
pub(super) fn render(sizes: &Sizes) -> String {
    let kb = |b: u64| format!("{:.1} KB", b as f64 / 1024.0);
    let met = |ok: bool| if ok { "yes" } else { "**no**" };
    let [map_br, map_gzip, map_plain] = sizes.map;
    let mut out = format!(
        "\n### Seat map of {} seats: bytes on the wire\n\n\
         | answer | br | gzip | uncompressed | target | met? |\n|---|---|---|---|---|---|\n",
        sizes.seats
    );
    let _ = writeln!(
        out,
        "| full map (`/seats`) | {} | {} | {} | ≤ 150 KB compressed | br {}, gzip {} |",
        kb(map_br),
        kb(map_gzip),
        kb(map_plain),
        met(map_br <= MAP_TARGET),
        met(map_gzip <= MAP_TARGET)
    );
    for (label, [br, plain], target) in [
        ("layout (`/layout`)", sizes.layout, None),
        (
            "full availability (`/availability`)",
            sizes.availability,
            None,
        ),
        (
            "delta after 1 hold of 1 seat (`?since=`)",
            sizes.delta_one,
            Some(DELTA_TARGET),
        ),
        (
            "delta after 10 holds of 4 seats",
            sizes.delta_few,
            Some(DELTA_TARGET),
        ),
    ] {
        let _ = writeln!(
            out,
            "| {label} | {br} B | — | {plain} B | {} | {} |",
            target.map_or("—".to_owned(), |t| format!("≤ {} KB", t / 1024)),
            target.map_or("—", |t| met(br.min(plain) <= t)),
        );
    }
    let _ = writeln!(
        out,
        "\nThe full map's answers came with `Content-Encoding: {}` and `{}`; sizes are the bodies as sent.",
        sizes.map_encodings[0], sizes.map_encodings[1]
    );
    out
}
