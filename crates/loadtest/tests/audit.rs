//! The audit against the real stores: a consistent sale passes, and each
//! broken promise, written into a migrated Postgres database or a Redis
//! Cluster room, is caught by its own check and by no other.

use core_service::db::Db;
use devstack::testing::{fresh_database, stack, unique_suffix};
use loadtest::audit::{self, Options, Verdict};
use queue_service::{domain::EventId, layout};
use redis::cluster::ClusterClient;
use sqlx::PgPool;

/// A migrated, empty core-service database and a pool on it.
async fn migrated() -> (String, PgPool) {
    let url = fresh_database().await;
    let settings = platform::settings::DatabaseSettings {
        url: url.clone().into(),
        max_connections: 2,
        min_connections: 0,
        acquire_timeout_ms: 10_000,
        statement_timeout_ms: 30_000,
        lock_timeout_ms: 10_000,
        tls: platform::settings::DatabaseTls::default(),
        allow_plaintext: false,
    };
    let db = Db::connect_lazy(&settings).unwrap();
    core_service::migrate(&db).await.expect("migrations apply");
    let pool = PgPool::connect(&url).await.unwrap();
    (url, pool)
}

/// One concert with four seats and a fan with 100,000 KRW charged; seat 1
/// sold to a paid reservation (payment, debit, published event, applied
/// sale), seat 2 in a live hold, seat 3 in a hold that lapsed and was
/// expired, seat 4 free.
const SALE: &str = r#"
INSERT INTO concerts (id, title, artist, venue) VALUES (1, 'Show', 'Band', 'Hall');
INSERT INTO performances (id, concert_id, starts_at, sale_opens_at, max_seats_per_order)
  VALUES (1, 1, now() + interval '30 days', now() - interval '1 hour', 4);
INSERT INTO users (id, balance_krw) VALUES ('ana', 70000);
INSERT INTO ledger_entries (user_id, kind, amount_krw, balance_after_krw)
  VALUES ('ana', 'charge', 100000, 100000);
INSERT INTO reservations (id, user_id, performance_id, status, amount_krw, held_until, session_id) VALUES
  ('00000000-0000-0000-0000-0000000000a1', 'ana', 1, 'confirmed', 30000, now() - interval '5 minutes', 's1'),
  ('00000000-0000-0000-0000-0000000000a2', 'ana', 1, 'held', 30000, now() + interval '5 minutes', 's1'),
  ('00000000-0000-0000-0000-0000000000a3', 'ana', 1, 'expired', 30000, now() - interval '5 minutes', 's1');
INSERT INTO seats (id, performance_id, section, row_label, number, grade, price_krw, status, reservation_id, held_until) VALUES
  (1, 1, 'A', 'R1', 1, 'R', 30000, 'sold', '00000000-0000-0000-0000-0000000000a1', NULL),
  (2, 1, 'A', 'R1', 2, 'R', 30000, 'held', '00000000-0000-0000-0000-0000000000a2', now() + interval '5 minutes'),
  (3, 1, 'A', 'R1', 3, 'R', 30000, 'free', NULL, NULL),
  (4, 1, 'A', 'R1', 4, 'R', 30000, 'free', NULL, NULL);
INSERT INTO reservation_seats (reservation_id, seat_id, price_krw, active) VALUES
  ('00000000-0000-0000-0000-0000000000a1', 1, 30000, true),
  ('00000000-0000-0000-0000-0000000000a2', 2, 30000, true),
  ('00000000-0000-0000-0000-0000000000a3', 3, 30000, false);
INSERT INTO payments (id, user_id, reservation_id, idempotency_key, amount_krw, status, paid_at, price_krw)
  VALUES ('00000000-0000-0000-0000-0000000000b1', 'ana', '00000000-0000-0000-0000-0000000000a1',
          'key-1', 30000, 'completed', now() - interval '5 minutes', 30000);
INSERT INTO ledger_entries (user_id, kind, amount_krw, balance_after_krw, payment_id, price_krw)
  VALUES ('ana', 'spend', 30000, 70000, '00000000-0000-0000-0000-0000000000b1', 30000);
INSERT INTO outbox (event_id, topic, aggregate_key, payload, created_at, published_at)
  VALUES ('00000000-0000-0000-0000-0000000000c1', 'payment.completed',
          '00000000-0000-0000-0000-0000000000a1',
          '{"data": {"payment_id": "00000000-0000-0000-0000-0000000000b1"}}',
          now() - interval '5 minutes', now() - interval '5 minutes');
INSERT INTO ranking_sales (payment_id, concert_id, tickets, paid_at, applied)
  VALUES ('00000000-0000-0000-0000-0000000000b1', 1, 1, now() - interval '5 minutes', true);
"#;

fn options(prefix: &str) -> Options {
    Options {
        grace_seconds: 60,
        retention_seconds: loadtest::audit::DEFAULT_RETENTION_SECONDS,
        key_prefix: prefix.to_owned(),
    }
}

async fn verdict(url: &str, prefix: &str) -> Verdict {
    audit::audit(url, &stack().redis_urls, &options(prefix))
        .await
        .expect("the audit runs")
}

fn broken(verdict: &Verdict) -> Vec<&'static str> {
    verdict.violated().map(|c| c.name).collect()
}

#[tokio::test]
async fn a_consistent_sale_passes_and_each_broken_promise_fails_its_own_check() {
    let (url, pool) = migrated().await;
    let prefix = format!("audit-{}:", unique_suffix());
    sqlx::raw_sql(SALE).execute(&pool).await.unwrap();
    let clean = verdict(&url, &prefix).await;
    assert!(
        clean.passed,
        "a consistent sale passes: {:?}",
        broken(&clean)
    );
    assert!(
        clean.totals.contains(&("seats sold", 1)),
        "{:?}",
        clean.totals
    );

    // Each corruption, applied and then undone, breaks exactly one promise.
    let cases: &[(&str, &str, &str)] = &[
        (
            "UPDATE seats SET status = 'sold', reservation_id = '00000000-0000-0000-0000-0000000000a3', held_until = NULL WHERE id = 3",
            "UPDATE seats SET status = 'free', reservation_id = NULL WHERE id = 3",
            "sold_seats_are_paid",
        ),
        (
            "UPDATE reservation_seats SET active = false WHERE seat_id = 1",
            "UPDATE reservation_seats SET active = true WHERE seat_id = 1",
            "paid_seats_are_sold",
        ),
        (
            "UPDATE payments SET amount_krw = 20000",
            "UPDATE payments SET amount_krw = 30000",
            "one_debit_per_payment",
        ),
        (
            "UPDATE users SET balance_krw = 80000 WHERE id = 'ana'",
            "UPDATE users SET balance_krw = 70000 WHERE id = 'ana'",
            "balances_match_the_ledger",
        ),
        (
            "UPDATE outbox SET topic = 'payment.lost'",
            "UPDATE outbox SET topic = 'payment.completed'",
            "every_payment_has_one_event",
        ),
        (
            "UPDATE outbox SET published_at = NULL",
            "UPDATE outbox SET published_at = created_at",
            "events_are_published",
        ),
        (
            "UPDATE ranking_sales SET applied = false",
            "UPDATE ranking_sales SET applied = true",
            "every_payment_is_applied_once",
        ),
        (
            "UPDATE reservations SET held_until = now() - interval '10 minutes' WHERE id = '00000000-0000-0000-0000-0000000000a2'",
            "UPDATE reservations SET held_until = now() + interval '5 minutes' WHERE id = '00000000-0000-0000-0000-0000000000a2'",
            "overdue_holds_expired",
        ),
    ];
    for (corrupt, undo, check) in cases {
        sqlx::raw_sql(*corrupt).execute(&pool).await.unwrap();
        let found = verdict(&url, &prefix).await;
        assert_eq!(broken(&found), vec![*check], "after: {corrupt}");
        assert!(!found.passed);
        sqlx::raw_sql(*undo).execute(&pool).await.unwrap();
    }

    // A second paid reservation of seat 1 (its claim row inactive, so the
    // unique index lets it in) is a seat sold twice, and a payment whose
    // reservation is not paid.
    sqlx::raw_sql(
        "INSERT INTO reservations (id, user_id, performance_id, status, amount_krw, held_until) \
         VALUES ('00000000-0000-0000-0000-0000000000a4', 'ana', 1, 'confirmed', 30000, now()); \
         INSERT INTO reservation_seats (reservation_id, seat_id, price_krw, active) \
         VALUES ('00000000-0000-0000-0000-0000000000a4', 1, 30000, false);",
    )
    .execute(&pool)
    .await
    .unwrap();
    let twice = verdict(&url, &prefix).await;
    let names = broken(&twice);
    assert!(names.contains(&"no_seat_claimed_twice"), "{names:?}");
    assert!(
        names.contains(&"one_payment_per_paid_reservation"),
        "{names:?}"
    );
}

#[tokio::test]
async fn a_room_over_capacity_or_with_a_stale_or_doubled_fan_fails_the_room_checks() {
    let (url, pool) = migrated().await;
    drop(pool);
    let prefix = format!("audit-{}:", unique_suffix());
    let event = EventId::parse("audited-room").unwrap();
    let keys = layout::event_keys(&prefix, &event);
    let client = ClusterClient::new(stack().redis_urls.clone()).unwrap();
    let mut conn = client.get_async_connection().await.unwrap();
    let (seconds, _): (i64, i64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
    let now_ms = seconds * 1_000;
    redis::cmd("SADD")
        .arg(layout::rooms_key(&prefix))
        .arg(event.as_str())
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    redis::cmd("HSET")
        .arg(&keys[0])
        .arg("state")
        .arg("open")
        .arg("capacity")
        .arg(2)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    redis::cmd("ZADD")
        .arg(&keys[2])
        .arg(now_ms + 600_000)
        .arg("ana")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    redis::cmd("HSET")
        .arg(&keys[3])
        .arg("ana")
        .arg("session-ana")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let clean = verdict(&url, &prefix).await;
    assert!(clean.passed, "{:?}", broken(&clean));
    assert!(clean.totals.contains(&("registered waiting rooms", 1)));

    // Two more fans: over capacity; bo's access expired ten minutes ago and
    // is still in the set; cy also waits in line; neither has a session.
    redis::cmd("ZADD")
        .arg(&keys[2])
        .arg(now_ms - 600_000)
        .arg("bo")
        .arg(now_ms + 600_000)
        .arg("cy")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    redis::cmd("ZADD")
        .arg(&keys[1])
        .arg(7)
        .arg("cy")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let found = verdict(&url, &prefix).await;
    assert_eq!(
        broken(&found),
        vec![
            "active_set_within_capacity",
            "no_admission_outlives_its_token",
            "no_fan_both_waiting_and_active",
            "every_active_fan_has_a_session",
        ]
    );
    let sessions = found
        .checks
        .iter()
        .find(|c| c.name == "every_active_fan_has_a_session")
        .unwrap();
    assert_eq!(sessions.violations, 2);
    assert_eq!(sessions.examples, vec!["audited-room (2)".to_owned()]);
}
