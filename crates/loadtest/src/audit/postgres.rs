//! The booking core's half of the audit: what Postgres must always say
//! after a sale, whatever failed during it.
//!
//! Each rule is one query that returns the offending rows as text (a seat
//! id, a reservation id, a payment id), so a violation comes with its
//! evidence. Rules that depend on work done after a commit (the relay
//! publishing, the consumer applying, the sweeper expiring) only look at
//! rows older than the grace period, and rules about events only at
//! payments younger than the outbox's retention (published rows are
//! deleted after it, by design).

use sqlx::PgPool;

use super::{Check, Options};

/// One rule: a name, the promise in words, and the query that lists
/// violations. `$1` is the grace period and `$2` the retention window,
/// both in seconds (a query may use neither).
struct Rule {
    name: &'static str,
    promise: &'static str,
    query: &'static str,
}

/// The rules, in the order they are printed.
const RULES: &[Rule] = &[
    Rule {
        name: "sold_seats_are_paid",
        promise: "every sold seat belongs to a paid (confirmed) reservation",
        query: "SELECT s.id::text FROM seats s \
                LEFT JOIN reservations r ON r.id = s.reservation_id \
                WHERE s.status = 'sold' AND r.status IS DISTINCT FROM 'confirmed'",
    },
    Rule {
        name: "paid_seats_are_sold",
        promise: "every seat of a paid reservation is sold to that reservation and still claimed by it",
        query: "SELECT r.id::text || ' seat ' || rs.seat_id FROM reservations r \
                JOIN reservation_seats rs ON rs.reservation_id = r.id \
                JOIN seats s ON s.id = rs.seat_id \
                WHERE r.status = 'confirmed' \
                  AND (NOT rs.active OR s.status <> 'sold' OR s.reservation_id IS DISTINCT FROM r.id)",
    },
    Rule {
        name: "no_seat_claimed_twice",
        promise: "no seat is in two paid reservations, or in two live holds",
        query: "SELECT rs.seat_id::text FROM reservation_seats rs \
                JOIN reservations r ON r.id = rs.reservation_id \
                WHERE r.status = 'confirmed' \
                   OR (r.status = 'held' AND r.held_until > now() AND rs.active) \
                GROUP BY rs.seat_id HAVING count(*) > 1",
    },
    Rule {
        name: "one_payment_per_paid_reservation",
        promise: "every paid reservation has exactly one completed payment, and every completed payment a paid reservation",
        query: "SELECT r.id::text FROM reservations r \
                LEFT JOIN payments p ON p.reservation_id = r.id AND p.status = 'completed' \
                WHERE r.status = 'confirmed' GROUP BY r.id HAVING count(p.id) <> 1 \
                UNION ALL \
                SELECT 'payment ' || p.id FROM payments p \
                JOIN reservations r ON r.id = p.reservation_id \
                WHERE p.status = 'completed' AND r.status <> 'confirmed'",
    },
    Rule {
        name: "one_debit_per_payment",
        promise: "every payment has exactly one debit (a ledger spend) of its amount by its payer, and no debit lacks its payment",
        query: "SELECT p.id::text FROM payments p \
                LEFT JOIN ledger_entries l ON l.payment_id = p.id AND l.kind = 'spend' \
                GROUP BY p.id, p.amount_krw, p.user_id \
                HAVING count(l.id) <> 1 \
                    OR sum(l.amount_krw) IS DISTINCT FROM p.amount_krw \
                    OR bool_or(l.user_id <> p.user_id) \
                UNION ALL \
                SELECT 'ledger ' || l.id FROM ledger_entries l \
                LEFT JOIN payments p ON p.id = l.payment_id \
                WHERE l.kind = 'spend' AND p.id IS NULL",
    },
    Rule {
        name: "balances_match_the_ledger",
        promise: "every fan's balance (KRW) equals their charges and refunds minus their spends",
        query: "SELECT u.id FROM users u \
                LEFT JOIN ledger_entries l ON l.user_id = u.id \
                GROUP BY u.id, u.balance_krw \
                HAVING u.balance_krw <> COALESCE(sum(CASE WHEN l.kind = 'spend' \
                    THEN -l.amount_krw ELSE l.amount_krw END), 0)",
    },
    Rule {
        name: "every_payment_has_one_event",
        promise: "every payment within the outbox retention has exactly one payment.completed in the outbox",
        query: "WITH events AS ( \
                  SELECT o.payload -> 'data' ->> 'payment_id' AS payment_id, count(*) AS n \
                  FROM outbox o WHERE o.topic = 'payment.completed' GROUP BY 1) \
                SELECT p.id::text || ' (' || COALESCE(e.n, 0) || ' events)' FROM payments p \
                LEFT JOIN events e ON e.payment_id = p.id::text \
                WHERE p.paid_at > now() - make_interval(secs => $2) \
                  AND COALESCE(e.n, 0) <> 1",
    },
    Rule {
        name: "events_are_published",
        promise: "no outbox row stays unpublished past the grace period",
        query: "SELECT o.event_id::text || ' ' || o.topic FROM outbox o \
                WHERE o.published_at IS NULL \
                  AND o.created_at < now() - make_interval(secs => $1)",
    },
    Rule {
        name: "every_payment_is_applied_once",
        promise: "the payment.completed consumer applied every payment once (ranking_sales: one applied row of the right ticket count, none without its payment)",
        query: "SELECT p.id::text || CASE WHEN rs.payment_id IS NULL THEN ' (never applied)' \
                    WHEN NOT rs.applied THEN ' (not yet in Redis)' ELSE ' (wrong tickets)' END \
                FROM payments p \
                LEFT JOIN ranking_sales rs ON rs.payment_id = p.id \
                WHERE p.paid_at < now() - make_interval(secs => $1) \
                  AND p.paid_at > now() - make_interval(secs => $2) \
                  AND (rs.payment_id IS NULL OR NOT rs.applied OR rs.tickets <> \
                    (SELECT count(*) FROM reservation_seats x WHERE x.reservation_id = p.reservation_id)) \
                UNION ALL \
                SELECT 'sale ' || rs.payment_id FROM ranking_sales rs \
                LEFT JOIN payments p ON p.id = rs.payment_id WHERE p.id IS NULL",
    },
    Rule {
        name: "overdue_holds_expired",
        promise: "no hold stays held past its held_until plus the grace period",
        query: "SELECT r.id::text FROM reservations r \
                WHERE r.status = 'held' \
                  AND r.held_until < now() - make_interval(secs => $1)",
    },
];

/// Examples kept per violated rule.
const EXAMPLES: i64 = 5;

/// Runs every rule against `pool`.
///
/// # Errors
/// When a query fails (the database is down, or its schema is not
/// core-service's).
pub async fn audit(pool: &PgPool, options: &Options) -> Result<Vec<Check>, sqlx::Error> {
    let mut checks = Vec::with_capacity(RULES.len());
    for rule in RULES {
        let counted = format!(
            "SELECT count(*), (array_agg(v.example ORDER BY v.example))[1:{EXAMPLES}] \
             FROM ({}) AS v(example)",
            rule.query
        );
        // Safe: `counted` is built from the constant rules above only.
        let (violations, examples): (i64, Option<Vec<String>>) =
            sqlx::query_as(sqlx::AssertSqlSafe(counted))
                .bind(options.grace_seconds as f64)
                .bind(options.retention_seconds as f64)
                .fetch_one(pool)
                .await?;
        checks.push(Check {
            store: "postgres",
            name: rule.name,
            promise: rule.promise,
            violations: u64::try_from(violations).unwrap_or(0),
            examples: examples.unwrap_or_default(),
        });
    }
    Ok(checks)
}

/// Totals printed beside the verdict: seats sold, seats in paid
/// reservations, completed payments, payment events in the outbox.
///
/// # Errors
/// When a query fails.
pub async fn totals(pool: &PgPool) -> Result<Vec<(&'static str, i64)>, sqlx::Error> {
    let (sold, paid_seats, payments, events): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM seats WHERE status = 'sold'), \
                (SELECT count(*) FROM reservation_seats rs JOIN reservations r \
                   ON r.id = rs.reservation_id WHERE r.status = 'confirmed'), \
                (SELECT count(*) FROM payments WHERE status = 'completed'), \
                (SELECT count(*) FROM outbox WHERE topic = 'payment.completed')",
    )
    .fetch_one(pool)
    .await?;
    Ok(vec![
        ("seats sold", sold),
        ("seats in paid reservations", paid_seats),
        ("completed payments", payments),
        ("payment.completed rows in the outbox", events),
    ])
}
