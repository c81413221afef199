//! What the tools share: the services started with a tool's settings, a
//! client with the tools' admin keys, and seeding through the admin API
//! (concerts, balances, rooms) and the fan API (admitted fans).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use core_service::{
    api::{ChargeRequest, NewConcert, NewPerformance, NewSection},
    domain::Krw,
};
use devstack::{Endpoints, StackConfig, services};
use futures::StreamExt;
use onsale_client::{
    Client, ClientBuilder, RoomState,
    queue_api::{EnterRequest, FanStatus, RoomRequest},
};

/// Admin key the tools give queue-service (local runs only).
pub const QUEUE_ADMIN_KEY: &str = "loadtest-queue-admin";
/// Admin key the tools give core-service (local runs only).
pub const CORE_ADMIN_KEY: &str = "loadtest-core-admin";
/// Seats per row of every seeded performance.
pub const SEATS_PER_ROW: u32 = 50;

/// Starts both services (release builds) with the tools' admin keys plus
/// `settings` (`ONSALE__…` pairs). Unless `reuse`, running services are
/// stopped first, so that they take these settings; with `reuse`, running
/// services keep their own. `tool` prefixes the progress line.
///
/// # Errors
/// When the build, the migration or a start fails.
pub async fn start_services(
    config: &StackConfig,
    endpoints: &Endpoints,
    tool: &str,
    settings: &[(&str, &str)],
    reuse: bool,
) -> Result<()> {
    let extra: Vec<(String, String)> = [
        ("ONSALE__CORE__ADMIN_KEY", CORE_ADMIN_KEY),
        ("ONSALE__QUEUE__ADMIN_KEY", QUEUE_ADMIN_KEY),
    ]
    .iter()
    .chain(settings)
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    if !reuse {
        services::down(config);
    }
    eprintln!("{tool}: starting services (release build)");
    services::start_with(config, endpoints, true, &extra).await
}

/// A client of the services devstack runs (their default local URLs),
/// sending with `http` and the tools' admin keys.
pub fn client(http: reqwest::Client) -> ClientBuilder {
    Client::builder()
        .http(http)
        .queue_admin_key(QUEUE_ADMIN_KEY)
        .core_admin_key(CORE_ADMIN_KEY)
}

/// One section of `rows` rows named `R1…` of `per_row` seats at `price`
/// KRW.
///
/// # Errors
/// When `price` is not positive.
pub fn section(name: &str, grade: &str, price: i64, rows: u32, per_row: u32) -> Result<NewSection> {
    Ok(NewSection {
        section: name.to_owned(),
        grade: grade.to_owned(),
        price: Krw::positive(price)?,
        rows: (1..=rows).map(|r| format!("R{r}")).collect(),
        seats_per_row: i32::try_from(per_row)?,
    })
}

/// Creates a concert with one performance of `sections`, on sale now,
/// starting in 30 days, at most 4 seats per order. Returns the performance
/// id and its seat ids (ascending).
///
/// # Errors
/// When core-service refuses or is unreachable.
pub async fn create_show(
    client: &Client,
    title: &str,
    artist: &str,
    venue: &str,
    sections: Vec<NewSection>,
) -> Result<(i64, Vec<i64>)> {
    let now = chrono::Utc::now();
    let created = client
        .create_concert(&NewConcert {
            title: title.to_owned(),
            artist: artist.to_owned(),
            venue: venue.to_owned(),
            performances: vec![NewPerformance {
                starts_at: now + chrono::Duration::days(30),
                sale_opens_at: now,
                max_seats_per_order: 4,
                sections,
            }],
        })
        .await?;
    let performance = created
        .performances
        .into_iter()
        .next()
        .context("no performance in the reply")?;
    Ok((performance.id, performance.seat_ids))
}

/// Charges each of `users` `amount` KRW through the admin API, 64 requests
/// at a time.
///
/// # Errors
/// When `amount` is not positive, core-service is unreachable, or any
/// charge is refused.
pub async fn charge_all(
    client: &Client,
    users: impl IntoIterator<Item = String>,
    amount: i64,
) -> Result<()> {
    let charge = ChargeRequest {
        amount: Krw::positive(amount)?,
    };
    let charge = &charge;
    let results: Vec<Result<()>> = futures::stream::iter(users)
        .map(|user| async move {
            client
                .charge(&user, charge)
                .await
                .with_context(|| format!("charging {user}"))?;
            Ok(())
        })
        .buffer_unordered(64)
        .collect()
        .await;
    results.into_iter().collect()
}

/// An open room of `capacity` admitting `admit_per_second`, with an access
/// TTL and an abandonment window in seconds.
pub fn open_room(
    capacity: u64,
    admit_per_second: f64,
    access_ttl_seconds: u64,
    abandon_after_seconds: u64,
) -> RoomRequest {
    RoomRequest {
        capacity: Some(capacity),
        admit_per_second: Some(admit_per_second),
        access_ttl_seconds: Some(access_ttl_seconds),
        abandon_after_seconds: Some(abandon_after_seconds),
        state: RoomState::Open,
    }
}

/// Enters `count` fans named `<prefix>-<i>` into `event`'s line, 64 at a
/// time, and returns their queue tokens, or (with `until_active`) polls
/// each every 200 ms until admitted and returns access tokens, in fan order.
///
/// # Errors
/// When any call is refused, or a fan is not admitted within 120 s.
pub async fn enter_many(
    client: &Client,
    event: &str,
    prefix: &str,
    count: usize,
    until_active: bool,
) -> Result<Vec<String>> {
    let results: Vec<Result<String>> = futures::stream::iter(0..count)
        .map(|i| async move {
            let mut ticket = client
                .enter(
                    event,
                    &EnterRequest {
                        user_id: format!("{prefix}-{i}"),
                    },
                )
                .await?;
            if !until_active {
                return Ok(ticket.queue_token);
            }
            let deadline = Instant::now() + Duration::from_secs(120);
            while ticket.status != FanStatus::Active {
                ensure!(Instant::now() < deadline, "fan {i} not admitted in 120 s");
                tokio::time::sleep(Duration::from_millis(200)).await;
                ticket = client.poll(event, &ticket.queue_token).await?;
            }
            ticket.access_token.context("no access_token")
        })
        .buffered(64)
        .collect()
        .await;
    results.into_iter().collect()
}
