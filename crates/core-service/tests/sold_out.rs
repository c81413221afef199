//! The booking core reports each performance's seat counts to its waiting
//! room (`ReportInventory`): the room admits no more fans than there are
//! seats for, tells the line `sold_out` at once when no seat is left and no
//! hold is live, and admits again, for the seats returned, when holds lapse.
//! Both services for real, on Redis Cluster and Postgres.

mod common;

use std::time::Duration;

use common::{TestApp, spawn_app_with};
use devstack::testing::eventually;
use onsale_client::queue_api::{FanStatus, Ticket};
use reqwest::StatusCode;

/// Reports five times a second, so a test sees them quickly.
const FAST_REPORTS: (&str, &str) = ("ONSALE__CORE__INVENTORY_REPORT_MS", "200");

/// `user` enters the line; their ticket.
async fn enter(app: &TestApp, performance: i64, user: &str) -> Ticket {
    app.client
        .as_fan(&app.identity(user))
        .enter(performance)
        .await
        .unwrap_or_else(|error| panic!("{user} could not enter: {error}"))
}

/// `user`'s status poll: the ticket, or the problem code of a refusal.
async fn poll(
    app: &TestApp,
    performance: i64,
    user: &str,
    ticket: &Ticket,
) -> Result<Ticket, String> {
    app.client
        .as_fan(&app.identity(user))
        .poll(performance, &ticket.queue_token)
        .await
        .map_err(|error| error.code().unwrap_or("no code").to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_every_seat_is_sold_the_line_is_told_sold_out_and_nobody_else_is_admitted() {
    let app = spawn_app_with(&[FAST_REPORTS]).await;
    let show = app.create_show(1, 2, 10_000, 2).await;
    app.open_room_of(show.performance_id, 1).await;
    app.charge("buyer", 100_000).await;
    let buyer = app.access_token(show.performance_id, "buyer").await;
    // The buyer holds the only slot: these fans wait.
    let waiting: Vec<(String, Ticket)> = {
        let mut fans = Vec::new();
        for i in 0..3 {
            let user = format!("waiting-{i}");
            let ticket = enter(&app, show.performance_id, &user).await;
            assert_eq!(ticket.status, FanStatus::Waiting);
            fans.push((user, ticket));
        }
        fans
    };

    let held = app.hold(&buyer, show.performance_id, &show.seat_ids).await;
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.body);
    // The buyer takes a moment to pay, as fans do: reports come every
    // 200 ms, so the room knows of the hold by then (a report can be up to
    // one period old, which is the bound on admissions it lets through).
    tokio::time::sleep(Duration::from_millis(600)).await;
    let paid = app
        .pay(
            &buyer,
            "buy-all",
            held.body["reservation_id"].as_str().unwrap(),
        )
        .await;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.body);

    // The buyer's slot is free again, but there is nothing left to buy:
    // every waiting fan learns it, and none is admitted.
    for (user, ticket) in &waiting {
        eventually(Duration::from_secs(10), || async {
            match poll(&app, show.performance_id, user, ticket).await {
                Err(code) if code == "sold_out" => Some(()),
                Ok(ticket) if ticket.status == FanStatus::Waiting => None,
                other => panic!("{user}: {other:?}"),
            }
        })
        .await;
    }
    let late = app
        .client
        .as_fan(&app.identity("late"))
        .enter(show.performance_id)
        .await
        .unwrap_err();
    assert_eq!(late.status(), Some(StatusCode::GONE));
    assert_eq!(late.code(), Some("sold_out"));
    let stats = app.room_stats(show.performance_id).await;
    assert_eq!(stats["sold_out"], true);
    assert_eq!(
        stats["admitted_total"], 1,
        "nobody admitted after the sale ended"
    );
    assert_eq!(
        stats["entered_total"], 4,
        "a fan told sold_out gets no place"
    );
    assert_eq!(
        (stats["waiting"].as_u64(), stats["sold_out_total"].as_u64()),
        (Some(0), Some(3)),
        "the fans told sold_out left the line with that answer"
    );
    for (user, ticket) in &waiting {
        assert_eq!(
            poll(&app, show.performance_id, user, ticket)
                .await
                .err()
                .as_deref(),
            Some("sold_out"),
            "{user} asking again hears the same"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seats_returned_by_lapsed_holds_admit_as_many_fans_as_there_are_seats() {
    let app = spawn_app_with(&[FAST_REPORTS, ("ONSALE__CORE__HOLD_TTL_SECONDS", "4")]).await;
    let show = app.create_show(1, 2, 10_000, 2).await;
    app.open_room_of(show.performance_id, 10).await;
    let holder = app.access_token(show.performance_id, "holder").await;
    let held = app.hold(&holder, show.performance_id, &show.seat_ids).await;
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.body);
    // Both seats are held (the room has slots to spare): once the report
    // says so, fans who come now wait, since a hold may lapse but no seat
    // is free.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fans: Vec<(String, Ticket)> = {
        let mut fans = Vec::new();
        for i in 0..3 {
            let user = format!("next-{i}");
            fans.push((user.clone(), enter(&app, show.performance_id, &user).await));
        }
        fans
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (user, ticket) in &fans {
        let now = poll(&app, show.performance_id, user, ticket).await.unwrap();
        assert_eq!(
            now.status,
            FanStatus::Waiting,
            "{user} waits while both seats are held"
        );
    }
    // The holder walks away; the hold lapses after 4 s and its two seats
    // return: two of the three are admitted, the third keeps waiting.
    app.client
        .as_fan(&holder.identity)
        .leave(show.performance_id, &holder.queue)
        .await
        .unwrap();
    eventually(Duration::from_secs(15), || async {
        (app.room_stats(show.performance_id).await["active"] == 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut admitted = 0;
    for (user, ticket) in &fans {
        let now = poll(&app, show.performance_id, user, ticket).await.unwrap();
        if now.status == FanStatus::Active {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 2, "one admission per returned seat");
    let stats = app.room_stats(show.performance_id).await;
    assert_eq!(stats["active"], 2);
    assert_eq!(stats["waiting"], 1);
    assert_eq!(stats["sold_out"], false, "seats are on sale");
}
