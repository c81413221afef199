//! Throughput of holds and payments through HTTP (with token verification
//! over gRPC), compared in the same run with pgbench running the same SQL
//! at the same concurrency. Ignored by default; run with
//! `cargo test -p core-service --test bench -- --ignored --nocapture`.
//! It prints figures and asserts only correctness (every request succeeded).

mod common;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use common::{Show, TestApp, spawn_app};
use futures::future::join_all;
use reqwest::StatusCode;

const CLIENTS: usize = 8;
const PHASE: Duration = Duration::from_secs(8);

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn summary(name: &str, mut latencies_ms: Vec<f64>, elapsed: Duration) {
    latencies_ms.sort_by(f64::total_cmp);
    println!(
        "BENCH {name}: {} ops in {:.2}s = {:.0} ops/s; p50 {:.2} ms, p99 {:.2} ms",
        latencies_ms.len(),
        elapsed.as_secs_f64(),
        latencies_ms.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies_ms, 0.5),
        percentile(&latencies_ms, 0.99)
    );
}

/// Each client holds single seats from its own slice until the phase ends.
async fn http_holds(app: &TestApp, show: &Show, tokens: &[String]) -> Vec<Vec<String>> {
    let slice = show.seat_ids.len() / CLIENTS;
    let started = Instant::now();
    let results = join_all(tokens.iter().enumerate().map(|(c, token)| {
        let seats = show.seat_ids[c * slice..(c + 1) * slice].to_vec();
        async move {
            let mut latencies = Vec::new();
            let mut reservations = Vec::new();
            for seat in seats {
                if started.elapsed() > PHASE {
                    break;
                }
                let t = Instant::now();
                let reply = app.hold(token, show.performance_id, &[seat]).await;
                latencies.push(t.elapsed().as_secs_f64() * 1e3);
                assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
                reservations.push(reply.body["reservation_id"].as_str().unwrap().to_owned());
            }
            (latencies, reservations)
        }
    }))
    .await;
    let elapsed = started.elapsed();
    summary(
        "http holds",
        results.iter().flat_map(|(l, _)| l.clone()).collect(),
        elapsed,
    );
    results.into_iter().map(|(_, r)| r).collect()
}

async fn http_payments(app: &TestApp, tokens: &[String], reservations: Vec<Vec<String>>) {
    let started = Instant::now();
    let results = join_all(tokens.iter().zip(reservations).map(
        |(token, reservations)| async move {
            let mut latencies = Vec::new();
            for reservation in reservations {
                if started.elapsed() > PHASE {
                    break;
                }
                let t = Instant::now();
                let reply = app
                    .pay(token, &format!("bench-{reservation}"), &reservation)
                    .await;
                latencies.push(t.elapsed().as_secs_f64() * 1e3);
                assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
            }
            latencies
        },
    ))
    .await;
    summary(
        "http payments",
        results.into_iter().flatten().collect(),
        started.elapsed(),
    );
}

/// Runs a pgbench script for `PHASE` with `CLIENTS` clients and prints tps
/// and latency percentiles from its per-transaction log.
fn pgbench(name: &str, database_url: &str, script: &str) {
    let dir =
        std::env::temp_dir().join(format!("core-bench-{}", devstack::testing::unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("script.sql");
    std::fs::write(&file, script).unwrap();
    let output = Command::new("pgbench")
        .current_dir(&dir)
        .args([
            "-n",
            "-c",
            &CLIENTS.to_string(),
            "-j",
            "2",
            "-T",
            &PHASE.as_secs().to_string(),
            "-M",
            "prepared",
            "-l",
        ])
        .arg("-f")
        .arg(&file)
        .arg(database_url)
        .output()
        .expect("pgbench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "pgbench failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut latencies: Vec<f64> = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("pgbench_log")
        {
            for line in std::fs::read_to_string(path).unwrap().lines() {
                if let Some(us) = line
                    .split_whitespace()
                    .nth(2)
                    .and_then(|v| v.parse::<f64>().ok())
                {
                    latencies.push(us / 1e3);
                }
            }
        }
    }
    let tps = stdout
        .lines()
        .find(|l| l.starts_with("tps"))
        .unwrap_or("tps = ?")
        .to_owned();
    latencies.sort_by(f64::total_cmp);
    println!(
        "BENCH pgbench {name}: {} txns, {tps}; p50 {:.2} ms, p99 {:.2} ms",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly with --ignored --nocapture"]
async fn holds_and_payments_throughput_against_pgbench() {
    let app = spawn_app().await;
    let http_show = app.create_show(100, 100, 1_000, 4).await;
    let users: Vec<String> = (0..CLIENTS).map(|c| format!("bench-{c}")).collect();
    let tokens: Vec<String> = join_all(
        users
            .iter()
            .map(|u| app.access_token(http_show.performance_id, u)),
    )
    .await;
    for user in &users {
        app.charge(user, 1_000_000_000).await;
    }
    // Warm-up: connections, prepared statements, the channel to queue-service.
    for token in &tokens {
        let _ = app.get("/v1/concerts").await;
        let _ = app.hold(token, http_show.performance_id, &[i64::MAX]).await;
    }

    let reservations = http_holds(&app, &http_show, &tokens).await;
    http_payments(&app, &tokens, reservations).await;

    // pgbench on a second performance of the same database.
    let pg_show = app.create_show(100, 100, 1_000, 4).await;
    let (lo, hi) = (
        pg_show.seat_ids[0],
        pg_show.seat_ids[pg_show.seat_ids.len() - 1],
    );
    let perf = pg_show.performance_id;
    for c in 0..CLIENTS {
        app.charge(&format!("pgb-{c}"), 1_000_000_000).await;
    }
    // The claim of src/store/holds.rs, rolled back (the deferred foreign key
    // needs the reservation row the full transaction below inserts).
    let claim = format!(
        "\\set seat random({lo}, {hi})\n\
         BEGIN;\n\
         WITH candidates AS (SELECT id, reservation_id AS previous FROM seats WHERE id = ANY(ARRAY[:seat::bigint]) \
         AND performance_id = {perf} AND (status = 'free' OR (status = 'held' AND held_until < now())) ORDER BY id \
         FOR UPDATE SKIP LOCKED) UPDATE seats s SET status = 'held', reservation_id = gen_random_uuid(), \
         held_until = now() + make_interval(secs => 0) FROM candidates c WHERE s.id = c.id \
         RETURNING s.id, s.section, s.row_label, s.number, s.grade, s.price_krw, s.held_until, c.previous;\n\
         ROLLBACK;\n"
    );
    pgbench("conditional UPDATE (claim only)", &app.database_url, &claim);

    // The whole hold transaction: claim, release the lapsed claim, insert
    // reservation + reservation_seats + outbox row.
    let hold_tx = format!(
        "\\set seat random({lo}, {hi})\n\
         SELECT gen_random_uuid() AS rid, gen_random_uuid() AS eid \\gset\n\
         BEGIN;\n\
         WITH candidates AS (SELECT id, reservation_id AS previous FROM seats WHERE id = ANY(ARRAY[:seat::bigint]) \
         AND performance_id = {perf} AND (status = 'free' OR (status = 'held' AND held_until < now())) ORDER BY id \
         FOR UPDATE SKIP LOCKED) UPDATE seats s SET status = 'held', reservation_id = :rid::uuid, \
         held_until = now() + make_interval(secs => 0) FROM candidates c WHERE s.id = c.id \
         RETURNING s.id, s.price_krw, s.held_until, c.previous;\n\
         WITH released AS (UPDATE reservation_seats SET active = false WHERE seat_id IN (SELECT id FROM seats WHERE reservation_id = :rid::uuid) AND active \
         RETURNING reservation_id) UPDATE reservations SET status = 'expired', updated_at = now() \
         WHERE id IN (SELECT reservation_id FROM released) AND status = 'held';\n\
         WITH r AS (INSERT INTO reservations (id, user_id, performance_id, status, amount_krw, held_until) \
         VALUES (:rid::uuid, 'pgb-' || :client_id::text, {perf}, 'held', 1000, now()) RETURNING id), \
         o AS (INSERT INTO outbox (event_id, topic, aggregate_key, payload, headers) \
         VALUES (:eid::uuid, 'reservation.expiration', :rid::uuid, '{{}}'::jsonb, '{{}}'::jsonb)) \
         INSERT INTO reservation_seats (reservation_id, seat_id, price_krw) \
         SELECT (SELECT id FROM r), id, price_krw FROM seats WHERE reservation_id = :rid::uuid;\n\
         END;\n"
    );
    pgbench("hold transaction", &app.database_url, &hold_tx);

    // The payment transaction of src/store/payments.rs, on a reservation
    // created (unmeasured by the HTTP side) in the same script; the latency
    // reported is the whole script, so pgbench is handicapped if anything.
    let pay_show = app.create_show(100, 100, 1_000, 4).await;
    let (plo, phi, pperf) = (
        pay_show.seat_ids[0],
        pay_show.seat_ids[pay_show.seat_ids.len() - 1],
        pay_show.performance_id,
    );
    let pay_tx = format!(
        "\\set seat random({plo}, {phi})\n\
         SELECT gen_random_uuid() AS rid, gen_random_uuid() AS pid, gen_random_uuid() AS eid, gen_random_uuid() AS k \\gset\n\
         INSERT INTO reservations (id, user_id, performance_id, status, amount_krw, held_until) \
         VALUES (:rid::uuid, 'pgb-' || :client_id::text, {pperf}, 'held', 1000, now() + interval '5 minutes');\n\
         INSERT INTO idempotency_keys (user_id, key, fingerprint, state, locked_until) \
         VALUES ('pgb-' || :client_id::text, :k::text, :rid::uuid, 'in_flight', now() + make_interval(secs => 30)) \
         ON CONFLICT (user_id, key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, locked_until = EXCLUDED.locked_until \
         WHERE idempotency_keys.state = 'in_flight' AND idempotency_keys.locked_until < now() RETURNING 1;\n\
         BEGIN;\n\
         SELECT r.user_id, r.performance_id, r.status, r.amount_krw, r.held_until < now() AS lapsed, now() AS now, \
         (SELECT count(*) FROM reservation_seats rs WHERE rs.reservation_id = r.id) AS seat_count \
         FROM reservations r WHERE r.id = :rid::uuid FOR UPDATE OF r NOWAIT;\n\
         UPDATE seats SET status = 'sold', held_until = NULL WHERE id IN (SELECT id FROM seats WHERE reservation_id = :rid::uuid \
         AND status = 'held' ORDER BY id FOR UPDATE SKIP LOCKED) RETURNING id;\n\
         UPDATE users SET balance_krw = balance_krw - 1000, updated_at = now() WHERE id = 'pgb-' || :client_id::text \
         AND balance_krw >= 1000 RETURNING balance_krw;\n\
         WITH ledger AS (INSERT INTO ledger_entries (user_id, kind, amount_krw, balance_after_krw, payment_id, created_at) \
         VALUES ('pgb-' || :client_id::text, 'spend', 1000, 1, :pid::uuid, now())), \
         confirmed AS (UPDATE reservations SET status = 'confirmed', updated_at = now() WHERE id = :rid::uuid), \
         payment AS (INSERT INTO payments (id, user_id, reservation_id, idempotency_key, amount_krw, status, paid_at) \
         VALUES (:pid::uuid, 'pgb-' || :client_id::text, :rid::uuid, :k::text, 1000, 'completed', now())), \
         event AS (INSERT INTO outbox (event_id, topic, aggregate_key, payload, headers) \
         VALUES (:eid::uuid, 'payment.completed', :rid::uuid, '{{}}'::jsonb, '{{}}'::jsonb)) \
         UPDATE idempotency_keys SET state = 'completed', response_status = 201, response_body = '{{}}'::jsonb \
         WHERE user_id = 'pgb-' || :client_id::text AND key = :k::text;\n\
         END;\n"
    );
    pgbench(
        "payment transaction (+ reservation insert)",
        &app.database_url,
        &pay_tx,
    );
}
