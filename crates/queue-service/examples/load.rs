//! Load run: starts queue-service in-process against the Redis Cluster named
//! by `ONSALE__REDIS__URLS`, opens a room whose line does not move, then
//! drives the HTTP API with 50 concurrent keep-alive clients: first `N`
//! entries (unique fans), then `N` status polls of those fans. Prints
//! throughput and latency percentiles per phase.
//!
//! `cargo run --release -p queue-service --example load -- 20000`
//! (with `eval "$(cargo run -q -p devstack -- env)"` first).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use queue_service::{CancellationToken, Listeners, Settings};
use serde_json::{Value, json};
use tokio::sync::Mutex;

const CONNECTIONS: usize = 50;

struct Phase {
    name: &'static str,
    elapsed: Duration,
    latencies: Vec<Duration>,
    errors: usize,
}

impl Phase {
    fn report(&mut self) {
        self.latencies.sort();
        let pct = |p: f64| {
            let i = ((self.latencies.len() as f64 * p).ceil() as usize)
                .clamp(1, self.latencies.len())
                - 1;
            self.latencies[i].as_secs_f64() * 1000.0
        };
        println!(
            "{:<7} requests={} errors={} seconds={:.2} rps={:.0} p50_ms={:.2} p95_ms={:.2} p99_ms={:.2} max_ms={:.2}",
            self.name,
            self.latencies.len(),
            self.errors,
            self.elapsed.as_secs_f64(),
            self.latencies.len() as f64 / self.elapsed.as_secs_f64(),
            pct(0.50),
            pct(0.95),
            pct(0.99),
            pct(1.0),
        );
    }
}

async fn drive<F, Fut>(name: &'static str, total: usize, request: F) -> Phase
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let request = Arc::new(request);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CONNECTIONS {
        let (request, next) = (request.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0);
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let at = Instant::now();
                if request(i).await {
                    latencies.push(at.elapsed());
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut phase = Phase {
        name,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
        errors: 0,
    };
    for worker in workers {
        let (latencies, errors) = worker.await.expect("worker");
        phase.latencies.extend(latencies);
        phase.errors += errors;
    }
    phase.elapsed = started.elapsed();
    phase
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let total: usize = std::env::args().nth(1).map_or(Ok(20_000), |n| n.parse())?;
    let mut settings = Settings::load()?;
    let prefix = format!("load{}:", std::process::id());
    settings.redis.key_prefix = prefix.clone();
    let redis_urls = settings.redis.urls.clone();
    settings.queue.rate_limit.per_second = 1_000_000;
    settings.queue.rate_limit.burst = 1_000_000;
    let admin_key =
        platform::settings::ExposeSecret::expose_secret(&settings.queue.admin_key).to_owned();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", http.local_addr()?);
    let app = queue_service::build(settings).await?;
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(queue_service::run(
        app,
        Listeners { http, grpc },
        shutdown.clone(),
    ));

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS)
        .build()?;
    let event = "load-perf";
    // One slot, taken at once and held: the line stays still, as in the
    // minutes before a sale opens.
    let room = json!({"capacity": 1, "admit_per_second": 0.001, "access_ttl_seconds": 3600,
        "abandon_after_seconds": 600, "state": "open"});
    let opened = client
        .put(format!("{base}/admin/v1/events/{event}/waiting-room"))
        .header("x-admin-key", &admin_key)
        .json(&room)
        .send()
        .await?;
    anyhow::ensure!(
        opened.status().is_success(),
        "opening the room: {}",
        opened.status()
    );

    let tokens = Arc::new(Mutex::new(vec![String::new(); total]));
    let mut enter = {
        let (client, base, tokens) = (client.clone(), base.clone(), tokens.clone());
        drive("enter", total, move |i| {
            let (client, base, tokens) = (client.clone(), base.clone(), tokens.clone());
            async move {
                let Ok(response) = client
                    .post(format!("{base}/v1/events/{event}/queue"))
                    .json(&json!({"user_id": format!("fan-{i}")}))
                    .send()
                    .await
                else {
                    return false;
                };
                if !response.status().is_success() {
                    return false;
                }
                let Ok(body) = response.json::<Value>().await else {
                    return false;
                };
                tokens.lock().await[i] =
                    body["queue_token"].as_str().unwrap_or_default().to_owned();
                true
            }
        })
        .await
    };
    enter.report();

    let tokens = Arc::new(tokens.lock().await.clone());
    let mut status = {
        let (client, base) = (client.clone(), base.clone());
        drive("status", total, move |i| {
            let (client, base, tokens) = (client.clone(), base.clone(), tokens.clone());
            async move {
                let response = client
                    .get(format!("{base}/v1/events/{event}/queue/status"))
                    .bearer_auth(&tokens[i])
                    .send()
                    .await;
                match response {
                    Ok(response) if response.status().is_success() => {
                        response.bytes().await.is_ok()
                    }
                    _ => false,
                }
            }
        })
        .await
    };
    status.report();

    shutdown.cancel();
    server.await??;

    // Leave the shared cluster as it was: every key of the room shares one
    // hash tag, so one DEL removes them (presence bitmaps expire by TTL).
    let cluster = redis::cluster::ClusterClient::new(redis_urls)?;
    let mut connection = cluster.get_async_connection().await?;
    let tag = format!("{{{prefix}evt:{event}}}");
    let keys: Vec<String> = [
        "cfg", "waiting", "active", "sessions", "stats", "seq", "rates",
    ]
    .iter()
    .map(|name| format!("{tag}:{name}"))
    .collect();
    redis::cmd("DEL")
        .arg(&keys)
        .query_async::<i64>(&mut connection)
        .await?;
    redis::cmd("DEL")
        .arg(format!("{{{prefix}rooms}}"))
        .query_async::<i64>(&mut connection)
        .await?;
    Ok(())
}
