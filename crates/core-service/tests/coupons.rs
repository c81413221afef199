//! First-come coupons against the real stores: claims and their answers,
//! exactness when 10,000 fans race for 100 coupons over two instances
//! (with and without failing Postgres writes), reconciliation, claims
//! while Redis is down, and spending a coupon in a payment.

mod common;

use chrono::{Duration as Span, Utc};
use common::{Reply, TestApp, spawn_app, spawn_app_with};
use core_service::{
    api::{
        CreatePayment,
        coupons::{Discount, NewCampaign},
    },
    domain::{CouponCode, Krw, PerformanceId},
};
use devstack::testing::PrivateRedisNode;
use futures::{StreamExt, stream};
use reqwest::StatusCode;

/// A campaign open now for an hour: `quantity` coupons of 5,000 KRW off.
fn campaign(quantity: i32) -> NewCampaign {
    let now = Utc::now();
    NewCampaign {
        name: "Early bird".into(),
        concert_id: None,
        performance_id: None,
        discount: Discount::Amount {
            amount_krw: Krw::positive(5_000).unwrap(),
        },
        quantity,
        starts_at: now - Span::minutes(1),
        ends_at: now + Span::hours(1),
        valid_for_seconds: 86_400,
    }
}

async fn create(app: &TestApp, new: &NewCampaign) -> i64 {
    app.client
        .create_campaign(new)
        .await
        .unwrap_or_else(|error| panic!("creating the campaign failed: {error}"))
        .id
}

/// `user` claims a coupon of `campaign` on the instance at `base`.
async fn claim_on(app: &TestApp, base: &str, campaign: i64, user: &str) -> Reply {
    let request = app
        .http
        .post(format!("{base}/v1/coupon-campaigns/{campaign}/claims"))
        .bearer_auth(app.identity(user));
    Reply::send(request).await
}

async fn claim(app: &TestApp, campaign: i64, user: &str) -> Reply {
    claim_on(app, &app.base, campaign, user).await
}

/// `fans` fans claim at once, spread over `bases`; returns each fan's
/// answer.
async fn stampede(
    app: &TestApp,
    bases: &[String],
    campaign: i64,
    fans: usize,
) -> Vec<(String, Reply)> {
    stampede_with(app, bases, campaign, fans, 1).await
}

/// As [`stampede`], but a fan answered 503 claims again, up to `attempts`
/// claims in all, as a client that honours the problem's advice to try
/// again shortly does. A 503 is the right answer when the pool is
/// exhausted on a loaded machine, so an exactness test must not depend on
/// the machine being fast enough to never shed a claim.
async fn stampede_with(
    app: &TestApp,
    bases: &[String],
    campaign: i64,
    fans: usize,
    attempts: usize,
) -> Vec<(String, Reply)> {
    stream::iter(0..fans)
        .map(|i| {
            let base = bases[i % bases.len()].clone();
            async move {
                let user = format!("fan-{i}");
                let mut reply = claim_on(app, &base, campaign, &user).await;
                for _ in 1..attempts {
                    if reply.status != StatusCode::SERVICE_UNAVAILABLE {
                        break;
                    }
                    assert!(reply.is_problem(), "{user}: a 503 is a problem");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    reply = claim_on(app, &base, campaign, &user).await;
                }
                (user, reply)
            }
        })
        .buffer_unordered(200)
        .collect()
        .await
}

/// Checks the record: exactly `quantity` coupons with sequence numbers
/// 1…quantity, no fan with two, and every fan answered 201 holds the coupon
/// they were given.
async fn assert_exact(app: &TestApp, campaign: i64, quantity: i64, answers: &[(String, Reply)]) {
    let issued = app
        .scalar(&format!(
            "SELECT count(*) FROM coupons WHERE campaign_id = {campaign}"
        ))
        .await;
    assert_eq!(issued, quantity, "Postgres holds exactly the quantity");
    let fans = app
        .scalar(&format!(
            "SELECT count(DISTINCT user_id) FROM coupons WHERE campaign_id = {campaign}"
        ))
        .await;
    assert_eq!(fans, quantity, "no fan holds two coupons");
    let sequences = app
        .scalar(&format!(
            "SELECT count(DISTINCT sequence) FROM coupons WHERE campaign_id = {campaign} \
             AND sequence BETWEEN 1 AND {quantity}"
        ))
        .await;
    assert_eq!(sequences, quantity, "sequence numbers are 1..quantity");
    let counter = app
        .scalar(&format!(
            "SELECT issued::bigint FROM coupon_campaigns WHERE id = {campaign}"
        ))
        .await;
    assert_eq!(counter, quantity);
    for (user, reply) in answers
        .iter()
        .filter(|(_, r)| r.status == StatusCode::CREATED)
    {
        let code = reply.body["code"].as_str().expect("a coupon code");
        let holder: Option<String> =
            sqlx::query_scalar("SELECT user_id FROM coupons WHERE code = $1")
                .bind(code)
                .fetch_optional(&app.db)
                .await
                .unwrap();
        assert_eq!(
            holder.as_deref(),
            Some(user.as_str()),
            "{user} holds {code}"
        );
    }
}

#[tokio::test]
async fn a_fan_claims_one_coupon_and_a_second_claim_returns_the_same_one() {
    let app = spawn_app().await;
    let id = create(&app, &campaign(5)).await;
    let first = claim(&app, id, "ana").await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    assert_eq!(first.body["sequence"], 1);
    assert_eq!(first.body["discount"]["kind"], "amount");
    assert_eq!(first.body["discount"]["amount_krw"], 5_000);
    let again = claim(&app, id, "ana").await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.code(), "already_claimed");
    assert!(again.is_problem());
    assert_eq!(again.body["coupon"]["code"], first.body["code"]);

    let mine = app.fan("ana").coupons().await.unwrap();
    assert_eq!(mine.coupons.len(), 1);
    assert_eq!(mine.coupons[0].code, first.body["code"].as_str().unwrap());
    assert!(app.fan("bo").coupons().await.unwrap().coupons.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_through_the_gate_waits_out_a_campaign_row_locked_longer_than_the_general_lock_timeout()
 {
    let app = spawn_app().await;
    let id = create(&app, &campaign(5)).await;
    // Another claim's transaction holds the campaign's row for 600 ms, past
    // the 200 ms every other statement would wait.
    let mut other = app.db.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM coupon_campaigns WHERE id = $1 FOR UPDATE")
        .bind(id)
        .execute(&mut *other)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let (claimed, ()) = tokio::join!(claim(&app, id, "ana"), async {
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        other.commit().await.unwrap();
    });
    let waited = started.elapsed();
    assert_eq!(claimed.status, StatusCode::CREATED, "{:?}", claimed.body);
    assert_eq!(claimed.body["sequence"], 1);
    assert!(
        waited >= std::time::Duration::from_millis(500),
        "the claim queued behind the lock ({waited:?})"
    );
}

#[tokio::test]
async fn claims_outside_the_window_unknown_campaigns_and_sold_out_campaigns_are_refused() {
    let app = spawn_app().await;
    let mut later = campaign(5);
    later.starts_at = Utc::now() + Span::hours(1);
    later.ends_at = Utc::now() + Span::hours(2);
    let later = create(&app, &later).await;
    let reply = claim(&app, later, "ana").await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.code(), "campaign_not_started");

    let mut over = campaign(5);
    over.starts_at = Utc::now() - Span::hours(2);
    over.ends_at = Utc::now() - Span::hours(1);
    let over = create(&app, &over).await;
    let reply = claim(&app, over, "ana").await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.code(), "campaign_closed");

    let reply = claim(&app, 999_999, "ana").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = claim(&app, 0, "ana").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);

    let one = create(&app, &campaign(1)).await;
    assert_eq!(claim(&app, one, "ana").await.status, StatusCode::CREATED);
    let reply = claim(&app, one, "bo").await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_eq!(reply.code(), "sold_out");

    let unsigned = Reply::send(
        app.http
            .post(format!("{}/v1/coupon-campaigns/{one}/claims", app.base)),
    )
    .await;
    assert_eq!(unsigned.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn campaigns_with_broken_rules_are_refused_with_422() {
    let app = spawn_app().await;
    let mut both = campaign(5);
    both.concert_id = Some(core_service::domain::ConcertId::new(1).unwrap());
    both.performance_id = Some(PerformanceId::new(1).unwrap());
    let mut backwards = campaign(5);
    backwards.ends_at = backwards.starts_at;
    let mut none = campaign(5);
    none.quantity = 0;
    for body in [both, backwards, none] {
        let reply = Reply::send(app.client.create_campaign_request(&body)).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{:?}",
            reply.body
        );
        assert_eq!(reply.code(), "invalid_field");
    }
    let mut unknown = campaign(5);
    unknown.concert_id = Some(core_service::domain::ConcertId::new(987_654).unwrap());
    let reply = Reply::send(app.client.create_campaign_request(&unknown)).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_fans_over_two_instances_get_exactly_one_hundred_coupons() {
    let app = spawn_app().await;
    let twin = app.twin().await;
    let id = create(&app, &campaign(100)).await;
    let answers = stampede_with(&app, &[app.base.clone(), twin], id, 10_000, 20).await;
    let created = answers
        .iter()
        .filter(|(_, r)| r.status == StatusCode::CREATED)
        .count();
    assert_eq!(created, 100);
    for (user, reply) in &answers {
        assert!(
            reply.status == StatusCode::CREATED || reply.code() == "sold_out",
            "{user}: {} {:?}",
            reply.status,
            reply.body
        );
    }
    assert_exact(&app, id, 100, &answers).await;
    let report = app.client.reconcile_campaign(id).await.unwrap();
    assert_eq!(report.fixes, 0, "Redis already matched: {report:?}");
    assert_eq!(report.postgres_issued, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_postgres_writes_are_compensated_and_the_record_stays_exact() {
    let app = spawn_app().await;
    let twin = app.twin().await;
    let id = create(&app, &campaign(100)).await;
    // Inject: about a third of coupon writes fail as a statement timeout
    // would (a transient error, so the fan gets 503).
    sqlx::raw_sql(
        "CREATE FUNCTION fail_some_coupons() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF random() < 0.35 THEN \
           RAISE EXCEPTION 'injected coupon write failure' USING ERRCODE = '57014'; \
         END IF; RETURN NEW; END $$; \
         CREATE TRIGGER fail_some_coupons BEFORE INSERT ON coupons \
         FOR EACH ROW EXECUTE FUNCTION fail_some_coupons();",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let answers = stampede(&app, &[app.base.clone(), twin], id, 10_000).await;
    let failed = answers
        .iter()
        .filter(|(_, r)| r.status == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert!(failed > 0, "the injected failures reached fans");
    for (user, reply) in &answers {
        assert!(
            [StatusCode::CREATED, StatusCode::SERVICE_UNAVAILABLE].contains(&reply.status)
                || reply.code() == "sold_out",
            "{user}: {} {:?}",
            reply.status,
            reply.body
        );
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(reply.is_problem(), "{user}: a 503 is a problem");
        }
    }
    // Every failed write was compensated, so the stock went to later fans.
    assert_exact(&app, id, 100, &answers).await;
    let counts = app.client.campaign(id).await.unwrap().counts;
    assert_eq!(counts.compensated, Some(failed as i64));
    assert_eq!(counts.issued, 100);

    sqlx::raw_sql("DROP TRIGGER fail_some_coupons ON coupons")
        .execute(&app.db)
        .await
        .unwrap();
    let report = app.client.reconcile_campaign(id).await.unwrap();
    assert_eq!(report.fixes, 0, "compensation left Redis exact: {report:?}");
    // A fan refused with 503 who claims again is told the truth.
    let (user, _) = answers
        .iter()
        .find(|(_, r)| r.status == StatusCode::SERVICE_UNAVAILABLE)
        .unwrap();
    let retry = claim(&app, id, user).await;
    assert_eq!(retry.code(), "sold_out");
}

#[tokio::test]
async fn reconciliation_repairs_redis_from_postgres_and_reports_what_it_fixed() {
    let app = spawn_app().await;
    let id = create(&app, &campaign(3)).await;
    for fan in ["ana", "bo"] {
        assert_eq!(claim(&app, id, fan).await.status, StatusCode::CREATED);
    }
    // A compensation that never ran (a phantom fan) and a coupon issued on
    // the Postgres path (a holder Redis lacks).
    let redis =
        redis::cluster::ClusterClient::new(devstack::testing::stack().redis_urls.clone()).unwrap();
    let mut conn = redis.get_async_connection().await.unwrap();
    let prefix = &app.settings.redis.key_prefix;
    let fans = format!("{prefix}{{coupon:{id}}}:fans");
    let issued = format!("{prefix}{{coupon:{id}}}:issued");
    let _: () = redis::pipe()
        .cmd("SADD")
        .arg(&fans)
        .arg("phantom")
        .ignore()
        .cmd("SREM")
        .arg(&fans)
        .arg("bo")
        .ignore()
        .cmd("INCR")
        .arg(&issued)
        .ignore()
        .query_async(&mut conn)
        .await
        .unwrap();
    // Redis now counts 3 of 3: a new fan would be refused.
    assert_eq!(claim(&app, id, "cy").await.code(), "sold_out");

    let report = app.client.reconcile_campaign(id).await.unwrap();
    assert_eq!(report.fans_added, 1, "{report:?}");
    assert_eq!(report.fans_removed, 1, "{report:?}");
    assert_eq!(report.redis_issued_before, Some(3));
    assert_eq!(report.postgres_issued, 2);
    assert_eq!(report.fixes, 3);
    let campaign = app.client.campaign(id).await.unwrap();
    assert_eq!(campaign.counts.reconciliation_fixes, 3);
    assert_eq!(
        campaign.counts.last_reconciliation.map(|r| r.fans_added),
        Some(1)
    );
    // Repaired: the last coupon goes to the next fan, and bo is still known.
    assert_eq!(claim(&app, id, "cy").await.status, StatusCode::CREATED);
    assert_eq!(claim(&app, id, "bo").await.code(), "already_claimed");

    // The keys expire a day after the campaign's end, at the latest.
    let ttl: i64 = redis::cmd("TTL")
        .arg(&fans)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 86_400 && ttl <= 86_400 + 3_600, "ttl {ttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_redis_stopped_claims_take_the_exact_postgres_path_and_never_over_issue() {
    let mut node = PrivateRedisNode::new();
    node.start();
    node.assign_slots().await;
    let url = node.url();
    let app = spawn_app_with(&[
        ("ONSALE__REDIS__URLS", url.as_str()),
        ("ONSALE__REDIS__RESPONSE_TIMEOUT_MS", "300"),
        ("ONSALE__REDIS__CONNECT_TIMEOUT_MS", "300"),
    ])
    .await;
    let id = create(&app, &campaign(20)).await;
    assert_eq!(claim(&app, id, "early").await.status, StatusCode::CREATED);
    node.stop();

    let answers = stampede(&app, std::slice::from_ref(&app.base), id, 300).await;
    for (user, reply) in &answers {
        assert!(
            reply.status == StatusCode::CREATED || reply.code() == "sold_out",
            "{user}: {} {:?}",
            reply.status,
            reply.body
        );
    }
    let created = answers
        .iter()
        .filter(|(_, r)| r.status == StatusCode::CREATED)
        .count();
    assert_eq!(created, 19, "the 19 coupons left, no more");
    assert_exact(&app, id, 20, &answers).await;
    // Reconciliation needs Redis: 503 while it is down.
    let reply = Reply::send(
        app.http
            .post(format!(
                "{}/admin/v1/coupon-campaigns/{id}/reconciliation",
                app.base
            ))
            .header("x-admin-key", common::CORE_ADMIN_KEY),
    )
    .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);

    node.start();
    node.assign_slots().await;
    let report = devstack::testing::eventually(std::time::Duration::from_secs(20), || async {
        app.client.reconcile_campaign(id).await.ok()
    })
    .await;
    // The node kept no data: every holder is added back.
    assert_eq!(report.fans_added, 20, "{report:?}");
    assert_eq!(claim(&app, id, "late").await.code(), "sold_out");
    assert_eq!(claim(&app, id, "early").await.code(), "already_claimed");
}

/// A show of 4 seats at 30,000 KRW, `user` funded with 100,000 KRW and
/// admitted to it, and their hold of seat number `seat`.
async fn held(app: &TestApp, user: &str, seat: usize) -> (common::Pass, String, i64) {
    let show = app.create_show(1, 4, 30_000, 4).await;
    assert_eq!(app.charge(user, 100_000).await.status, StatusCode::CREATED);
    let pass = app.access_token(show.performance_id, user).await;
    let reservation = hold_seat(app, &pass, &show, seat).await;
    (pass, reservation, show.performance_id)
}

/// `user`'s new coupon of `campaign`: its code.
async fn code_of(app: &TestApp, campaign: i64, user: &str) -> String {
    let reply = claim(app, campaign, user).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    reply.body["code"].as_str().expect("a code").to_owned()
}

/// Holds seat number `seat` of `show` with `pass`; returns the reservation.
async fn hold_seat(app: &TestApp, pass: &common::Pass, show: &common::Show, seat: usize) -> String {
    let hold = app
        .hold(pass, show.performance_id, &[show.seat_ids[seat]])
        .await;
    assert_eq!(hold.status, StatusCode::CREATED, "{:?}", hold.body);
    hold.body["reservation_id"].as_str().unwrap().to_owned()
}

/// How many payments spent coupon `code`.
async fn payments_with(app: &TestApp, code: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM payments WHERE coupon_code = $1")
        .bind(code)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

async fn pay_with(
    app: &TestApp,
    pass: &common::Pass,
    key: &str,
    reservation: &str,
    coupon: Option<&str>,
) -> Reply {
    let payment = CreatePayment {
        reservation_id: reservation.parse().unwrap(),
        coupon_code: coupon.map(|code| CouponCode::parse(code).unwrap()),
    };
    let fan = app.client.as_fan(&pass.identity);
    Reply::send(fan.pay_request(&pass.access, key, &payment)).await
}

#[tokio::test]
async fn a_coupon_takes_its_discount_off_the_payment_once_and_the_ledger_shows_it() {
    let app = spawn_app().await;
    let id = create(&app, &campaign(5)).await;
    let coupon = claim(&app, id, "ana").await;
    let code = coupon.body["code"].as_str().unwrap().to_owned();
    let (pass, reservation, _) = held(&app, "ana", 0).await;

    let paid = pay_with(&app, &pass, "k1", &reservation, Some(&code)).await;
    assert_eq!(paid.status, StatusCode::CREATED, "{:?}", paid.body);
    assert_eq!(paid.body["price"], 30_000);
    assert_eq!(paid.body["discount"], 5_000);
    assert_eq!(paid.body["amount"], 25_000);
    assert_eq!(paid.body["coupon_code"], code.as_str());
    assert_eq!(app.balance("ana").await, 75_000);
    let ledger = app.fan("ana").balance("ana").await.unwrap();
    let spend = &ledger.recent_entries[0];
    assert_eq!(
        (
            spend.kind.as_str(),
            spend.price,
            spend.discount,
            spend.amount
        ),
        ("spend", Some(30_000), 5_000, 25_000)
    );
    assert_eq!(spend.coupon_code.as_deref(), Some(code.as_str()));
    let mine = app.fan("ana").coupons().await.unwrap();
    assert!(mine.coupons[0].used_at.is_some());

    // A replay keeps its answer; the same key with another coupon is 422.
    let replay = pay_with(&app, &pass, "k1", &reservation, Some(&code)).await;
    assert_eq!(replay.body, paid.body);
    let other = pay_with(&app, &pass, "k1", &reservation, None).await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other.code(), "idempotency_key_reused");

    // The coupon is spent: a second reservation cannot use it.
    let (pass2, second, _) = held(&app, "ana", 1).await;
    let again = pay_with(&app, &pass2, "k2", &second, Some(&code)).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.code(), "coupon_used");
    // Nobody else's coupon and no made-up code either.
    let made_up = pay_with(&app, &pass2, "k3", &second, Some("NOSUCHCOUPON00")).await;
    assert_eq!(made_up.code(), "unknown_coupon");
    let theirs = claim(&app, id, "bo").await;
    let stolen = theirs.body["code"].as_str().unwrap();
    let stolen = pay_with(&app, &pass2, "k4", &second, Some(stolen)).await;
    assert_eq!(stolen.code(), "unknown_coupon");
    let used = payments_with(&app, &code).await;
    assert_eq!(used, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_payments_racing_with_one_coupon_give_it_to_exactly_one() {
    let app = spawn_app().await;
    let id = create(&app, &campaign(5)).await;
    let code = code_of(&app, id, "ana").await;
    let show = app.create_show(1, 4, 30_000, 4).await;
    assert_eq!(app.charge("ana", 100_000).await.status, StatusCode::CREATED);
    let first = app.access_token(show.performance_id, "ana").await;
    let r1 = hold_seat(&app, &first, &show, 0).await;
    let r2 = hold_seat(&app, &first, &show, 1).await;
    let (a, b) = tokio::join!(
        pay_with(&app, &first, "race-1", &r1, Some(&code)),
        pay_with(&app, &first, "race-2", &r2, Some(&code)),
    );
    let codes = [a.code().to_owned(), b.code().to_owned()];
    let statuses = [a.status, b.status];
    assert!(statuses.contains(&StatusCode::CREATED), "{a:?} {b:?}");
    assert!(
        codes.contains(&"coupon_used".to_owned())
            || codes.contains(&"payment_in_progress".to_owned()),
        "{codes:?}"
    );
    let used = payments_with(&app, &code).await;
    assert_eq!(used, 1);
}

#[tokio::test]
async fn a_failed_payment_leaves_the_coupon_unused_and_an_expired_coupon_is_gone() {
    let app = spawn_app().await;
    let id = create(&app, &campaign(5)).await;
    let code = code_of(&app, id, "ana").await;
    let show = app.create_show(1, 4, 300_000, 4).await;
    assert_eq!(app.charge("ana", 1_000).await.status, StatusCode::CREATED);
    let pass = app.access_token(show.performance_id, "ana").await;
    let reservation = hold_seat(&app, &pass, &show, 0).await;
    let short = pay_with(&app, &pass, "p1", &reservation, Some(&code)).await;
    assert_eq!(short.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(short.body["required_krw"], 295_000);
    let unused = app
        .scalar(&format!(
            "SELECT count(*) FROM coupons WHERE code = '{code}' AND used_at IS NULL"
        ))
        .await;
    assert_eq!(unused, 1, "the failed payment rolled the spend back");

    sqlx::query("UPDATE coupons SET expires_at = now() - interval '1 second' WHERE code = $1")
        .bind(&code)
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(
        app.charge("ana", 1_000_000).await.status,
        StatusCode::CREATED
    );
    let expired = pay_with(&app, &pass, "p2", &reservation, Some(&code)).await;
    assert_eq!(expired.status, StatusCode::GONE);
    assert_eq!(expired.code(), "coupon_expired");
}

#[tokio::test]
async fn a_coupon_scoped_to_another_performance_does_not_apply() {
    let app = spawn_app().await;
    let other = app.create_show(1, 2, 10_000, 2).await;
    let mut scoped = campaign(5);
    scoped.performance_id = Some(PerformanceId::new(other.performance_id).unwrap());
    scoped.discount = Discount::Percent {
        percent: 10,
        max_krw: Krw::positive(2_000).unwrap(),
    };
    let id = create(&app, &scoped).await;
    let code = code_of(&app, id, "ana").await;
    let (pass, reservation, _) = held(&app, "ana", 0).await;
    let reply = pay_with(&app, &pass, "s1", &reservation, Some(&code)).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.code(), "coupon_not_applicable");
    // In scope, 10 % of 10,000 KRW is 1,000 KRW (under the 2,000 cap).
    let pass = app.access_token(other.performance_id, "ana").await;
    let reservation = hold_seat(&app, &pass, &other, 0).await;
    let paid = pay_with(&app, &pass, "s2", &reservation, Some(&code)).await;
    assert_eq!(paid.status, StatusCode::CREATED, "{:?}", paid.body);
    assert_eq!(paid.body["discount"], 1_000);
    assert_eq!(paid.body["amount"], 9_000);
}
