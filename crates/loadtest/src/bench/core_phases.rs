//! The booking-core half: holds (in rounds) and payments, each first as
//! pgbench running core-service's own SQL, then as wrk through core-service,
//! every request as an admitted, signed-in fan: `Authorization: Bearer
//! <identity token>` and the access token in `Onsale-Access-Token`.

use std::collections::HashMap;

use anyhow::{Context, Result, bail, ensure};
use core_service::{
    api::{CreatePayment, CreateReservation},
    domain::PerformanceId,
    store::sql,
};
use devstack::install;
use onsale_client::{ACCESS_TOKEN_HEADER, Client};
use serde_json::json;
use sqlx::{Connection, PgConnection, Row};

use super::{
    Phase, Run,
    cpu::settle,
    pgbench::{Length, bind, pgbench},
    room,
    wrk::{rows_script, url_of, wrk},
};
use crate::setup;

/// Price of every benchmark seat, KRW.
const SEAT_PRICE: i64 = 1_000;

/// The fan's headers in a wrk row script whose rows start with the fan's
/// identity token and access token (a Lua table's fields).
fn fan_headers() -> String {
    format!(r#"["Authorization"] = "Bearer " .. r[1], ["{ACCESS_TOKEN_HEADER}"] = r[2]"#)
}

/// Holds and payments: pgbench on the SQL, then wrk on HTTP.
pub(super) async fn run(run: &Run<'_>, record: &mut impl FnMut(Phase)) -> Result<()> {
    let (client, endpoints, args) = (&run.client, run.endpoints, run.args);
    let (run_id, work, pids) = (&run.run_id, &run.work, &run.pids);
    let pgbench_bin = install::ensure_postgres()?.join("pgbench");
    ensure!(
        pgbench_bin.is_file(),
        "no pgbench beside the Postgres server binaries"
    );
    let mut db = PgConnection::connect(&endpoints.database_url)
        .await
        .context("connecting to Postgres")?;
    let seats = args.seats as usize;
    let clients = args.core_connections as usize;

    eprintln!("bench: creating two performances of {seats} seats");
    let pg_show = create_show(client, seats).await?;
    let http_show = create_show(client, seats).await?;
    let pg_users: Vec<String> = (0..clients).map(|c| format!("pgb-{run_id}-{c}")).collect();
    setup::charge_all(client, pg_users, 1_000_000_000).await?;

    let per_client = seats / clients;
    // Client c's n-th hold takes seat lo + (n - 1) * clients + c: the clients
    // claim neighbouring seats at the same moment, as wrk's connections do
    // (they share one counter over the seat list). Giving each client its
    // own block of seats instead spared pgbench the contention on shared
    // heap and index pages that the service meets.
    let user = format!("'pgb-{run_id}-' || :client_id::text");
    // Ids derived from (run, client, n): the payment script finds the
    // reservation the hold script made at the same n, with no lookup.
    let id_of =
        |kind: &str| format!("md5('{kind}{run_id}-' || :client_id::text || '-' || :n::text)");
    let rid = &id_of("r");
    // Every service hold is a fresh fan's, in a fresh admission session: the
    // purchase-limit statements lock and count for a fan and session of the
    // transaction's own, so they find no earlier holds, as the service's do.
    // (The reservation itself is the client's user's, whose balance pays.)
    let session = format!("'pgb-{run_id}-' || :client_id::text || '-' || :n::text");
    let session = &session;
    // Real envelopes, built from the row's own values, so the consumers
    // handle these events exactly as the service's own (a hold's expiry is
    // deferred; a payment releases nobody) instead of dead-lettering them.
    let hold_event = format!(
        "jsonb_build_object('event_id', {eid}::uuid, 'type', 'reservation.expiration', 'version', 1, \
         'occurred_at', now(), 'key', {rid}::uuid::text, 'data', jsonb_build_object('reservation_id', {rid}::uuid, \
         'performance_id', {perf}, 'user_id', {user}, 'seat_ids', jsonb_build_array(:id::bigint), \
         'held_until', :held_until::timestamptz))",
        eid = id_of("e"),
        perf = pg_show.performance,
    );
    let pay_event = format!(
        "jsonb_build_object('event_id', {eid}::uuid, 'type', 'payment.completed', 'version', 1, \
         'occurred_at', :now::timestamptz, 'key', {rid}::uuid::text, 'data', jsonb_build_object('payment_id', {pid}::uuid, \
         'reservation_id', {rid}::uuid, 'user_id', {user}, 'session_id', {session}, 'performance_id', :performance_id::bigint, \
         'amount_krw', :amount_krw::bigint, 'seat_ids', jsonb_build_array(:id::bigint), 'paid_at', :now::timestamptz))",
        eid = id_of("f"),
        pid = id_of("p"),
    );
    let hold_script = format!(
        "\\set n :n + 1\n\\set seat {lo} + (:n - 1) * {clients} + :client_id\nBEGIN;\n{lock};\n{counted};\n{claim}\n\\gset\n{insert};\nEND;\n",
        lo = pg_show.first_seat,
        lock = bind(
            sql::HOLD_LOCK_FAN,
            &[session, &pg_show.performance.to_string()]
        ),
        counted = bind(
            sql::HOLD_FAN_SEATS,
            &[session, &pg_show.performance.to_string(), session]
        ),
        claim = bind(
            sql::HOLD_CLAIM,
            &[
                "ARRAY[:seat::bigint]",
                &pg_show.performance.to_string(),
                &format!("{rid}::uuid"),
                "3600",
            ]
        ),
        insert = bind(
            sql::HOLD_INSERT_RESERVATION,
            &[
                &format!("{rid}::uuid"),
                &user,
                &pg_show.performance.to_string(),
                ":price_krw::bigint",
                ":held_until::timestamptz",
                "ARRAY[:id::bigint]",
                "ARRAY[:price_krw::bigint]",
                &format!("{}::uuid", id_of("e")),
                "'reservation.expiration'",
                &format!("{rid}::uuid::text"),
                &hold_event,
                "'{}'::jsonb",
                session,
            ]
        ),
    );
    // Fans are admitted before either side runs, so each pgbench phase is
    // followed at once by its HTTP twin: pairs minutes apart drifted apart
    // with the machine (other tenants, database growth).
    eprintln!("bench: admitting {seats} fans for the hold phase");
    let performance = http_show.performance.to_string();
    client
        .configure_room(&performance, &room(u64::try_from(seats)? + 10, 100_000.0))
        .await?;
    let admitted = setup::enter_many(
        client,
        &run.issuer,
        &performance,
        &format!("fan-{run_id}"),
        seats,
        true,
    )
    .await?;
    let hold_rows: Vec<Vec<String>> = admitted
        .iter()
        .zip(http_show.first_seat..)
        .map(|(fan, seat)| vec![fan.identity.clone(), fan.token.clone(), seat.to_string()])
        .collect();
    let holds_lua = rows_script(
        work,
        "holds",
        &hold_rows,
        &format!(
            r#"wrk.format("POST", nil, {{{fan}, ["Content-Type"] = "application/json"}}, '{{"performance_id":{performance},"seat_ids":[' .. r[3] .. ']}}')"#,
            fan = fan_headers()
        ),
    )?;
    sqlx::query("ANALYZE seats").execute(&mut db).await?;
    let rounds = args.rounds;
    let per_round = u64::try_from(per_client)? / rounds;
    ensure!(
        per_round > 0,
        "{seats} seats over {clients} pgbench clients leave none for each of {rounds} rounds; raise --seats"
    );
    let (mut pg_rounds, mut http_rounds) = (Vec::new(), Vec::new());
    // Holds each pgbench client made, over all rounds: its transaction
    // counter `n` runs on from round to round, and the payment phase pays
    // transactions 1..=n of each client.
    let mut pg_holds_per_client = 0;
    let mut rows_used = 0;
    for round in 1..=rounds {
        settle(Some(&mut db)).await;
        eprintln!("bench: pgbench, the hold transaction (round {round}/{rounds})");
        let (phase, done) = pgbench(
            &pgbench_bin,
            work,
            "hold (pgbench, same SQL)",
            &hold_script,
            &endpoints.database_url,
            clients,
            Length::Transactions {
                start: pg_holds_per_client,
                count: per_round,
            },
        )
        .await?;
        ensure!(
            done == per_round,
            "a pgbench client made {done} of its {per_round} holds"
        );
        pg_holds_per_client += per_round;
        pg_rounds.push(phase);

        settle(Some(&mut db)).await;
        eprintln!("bench: wrk, holds through core-service (round {round}/{rounds})");
        let phase = wrk(
            "hold (HTTP)",
            &url_of(client.hold_request(
                "",
                &CreateReservation::seats(PerformanceId::new(http_show.performance)?, Vec::new()),
            ))?,
            &holds_lua,
            args.core_connections,
            args.hold_round_seconds(),
            pids.get("core-service").copied(),
            Some((rows_used, hold_rows.len() as u64)),
        )
        .await?;
        // Requests still in flight when wrk stopped (one per connection at
        // most) took rows too without being counted: skip as many. (One wrk
        // thread, `-t1`, so one Lua counter walks the rows.)
        rows_used += phase.requests + u64::from(args.core_connections);
        http_rounds.push(phase);
    }
    record(Phase::from_rounds(&pg_rounds).context("no hold round")?);
    record(Phase::from_rounds(&http_rounds).context("no hold round")?);

    let pay_script = format!(
        "\\set n :n + 1\n{header};\n{claim_key};\nBEGIN;\n{lock}\n\\gset\n{sell}\n\\gset\n{debit}\n\\gset\n{record};\nEND;\n",
        header = bind(sql::RESERVATION_HEADER, &[&format!("{rid}::uuid")]),
        claim_key = bind(
            sql::PAY_CLAIM_KEY,
            &[
                &user,
                "'k-' || :client_id::text || '-' || :n::text",
                rid,
                "30"
            ]
        ),
        lock = bind(sql::PAY_LOCK_RESERVATION, &[&format!("{rid}::uuid")]),
        sell = bind(sql::PAY_SELL_SEATS, &[&format!("{rid}::uuid")]),
        debit = bind(sql::PAY_DEBIT, &[&user, ":amount_krw::bigint"]),
        record = bind(
            sql::PAY_RECORD,
            &[
                &user,
                ":amount_krw::bigint",
                ":balance_krw::bigint",
                &format!("{}::uuid", id_of("p")),
                ":now::timestamptz",
                &format!("{rid}::uuid"),
                "'k-' || :client_id::text || '-' || :n::text",
                &format!("{}::uuid", id_of("f")),
                "'payment.completed'",
                &format!("{rid}::uuid::text"),
                &pay_event,
                "'{}'::jsonb",
                &format!("'{}'::jsonb", representative_response()),
                ":amount_krw::bigint",
                "0",
                "NULL::text",
            ]
        ),
    );
    settle(Some(&mut db)).await;
    eprintln!("bench: pgbench, the payment transaction");
    let (pg_pay, _) = pgbench(
        &pgbench_bin,
        work,
        "payment (pgbench, same SQL)",
        &pay_script,
        &endpoints.database_url,
        clients,
        Length::Transactions {
            start: 0,
            count: pg_holds_per_client,
        },
    )
    .await?;
    record(pg_pay);

    let held = sqlx::query(
        "SELECT id::text AS id, user_id FROM reservations WHERE performance_id = $1 AND status = 'held'",
    )
    .bind(http_show.performance)
    .fetch_all(&mut db)
    .await?;
    let fan_of: HashMap<&str, &setup::Entered> = admitted
        .iter()
        .map(|fan| (fan.user.as_str(), fan))
        .collect();
    let mut pay_rows = Vec::with_capacity(held.len());
    let mut payers = Vec::with_capacity(held.len());
    for row in &held {
        let id: String = row.try_get("id")?;
        let user: String = row.try_get("user_id")?;
        let fan = fan_of
            .get(user.as_str())
            .context("a hold by an unknown fan")?;
        pay_rows.push(vec![fan.identity.clone(), fan.token.clone(), id]);
        payers.push(user);
    }
    eprintln!("bench: charging {} payers", payers.len());
    setup::charge_all(client, payers, 1_000_000).await?;
    let pay_lua = rows_script(
        work,
        "payments",
        &pay_rows,
        &format!(
            r#"wrk.format("POST", nil, {{{fan}, ["Content-Type"] = "application/json", ["Idempotency-Key"] = "bench-" .. r[3]}}, '{{"reservation_id":"' .. r[3] .. '"}}')"#,
            fan = fan_headers()
        ),
    )?;
    settle(Some(&mut db)).await;
    eprintln!("bench: wrk, payments through core-service");
    record(
        wrk(
            "payment (HTTP)",
            &url_of(client.pay_request(
                "",
                "",
                &CreatePayment {
                    reservation_id: uuid::Uuid::nil(),
                    coupon_code: None,
                },
            ))?,
            &pay_lua,
            args.core_connections,
            args.seconds,
            pids.get("core-service").copied(),
            Some((0, pay_rows.len() as u64)),
        )
        .await?,
    );

    Ok(())
}

/// A payment reply of the size the service stores with each idempotency
/// key.
fn representative_response() -> String {
    json!({
        "payment_id": "0b6f1c52-3a0e-4d43-9a55-5d7c1f9e2b10",
        "reservation_id": "6f0d8a4e-0d5c-4b1f-8f7a-2c9b3e1d4a55",
        "user_id": "fan-000000",
        "status": "completed",
        "amount": SEAT_PRICE,
        "balance_after": 999_000,
        "paid_at": "2026-11-22T06:00:00.000000Z"
    })
    .to_string()
}

struct Show {
    performance: i64,
    first_seat: i64,
}

/// A performance of `seats` seats at [`SEAT_PRICE`], whose seat ids are
/// contiguous (pgbench computes them).
async fn create_show(client: &Client, seats: usize) -> Result<Show> {
    let per_row = setup::SEATS_PER_ROW;
    let rows = u32::try_from(seats)? / per_row;
    ensure!(
        seats.is_multiple_of(per_row as usize),
        "--seats must be a multiple of {per_row}"
    );
    let section = setup::section("A", "R", SEAT_PRICE, rows, per_row)?;
    let (performance, seat_ids) = setup::create_show(
        client,
        "loadtest bench",
        "wrk",
        "Loopback Hall",
        vec![section],
    )
    .await?;
    let (Some(&lo), Some(&hi)) = (seat_ids.first(), seat_ids.last()) else {
        bail!("performance {performance} has no seats");
    };
    ensure!(
        hi - lo + 1 == i64::try_from(seat_ids.len())? && seat_ids.len() == seats,
        "seat ids of performance {performance} are not contiguous"
    );
    Ok(Show {
        performance,
        first_seat: lo,
    })
}
