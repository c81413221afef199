//! What the tools share: the services started with a tool's settings, a
//! client with the tools' admin keys, fans signed in with the stack's
//! identity issuer, and seeding through the admin API (concerts, balances,
//! rooms) and the fan API (admitted fans).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use core_service::{
    api::{ChargeRequest, NewConcert, NewPerformance, NewSection},
    domain::Krw,
};
use devstack::{Endpoints, StackConfig, issuer_process, services, stack};
use futures::StreamExt;
use onsale_client::{
    Client, ClientBuilder, Issuer, RoomState,
    queue_api::{FanStatus, RoomRequest},
};

/// Admin key the tools give queue-service (local runs only).
pub const QUEUE_ADMIN_KEY: &str = "loadtest-queue-admin";
/// Admin key the tools give core-service (local runs only).
pub const CORE_ADMIN_KEY: &str = "loadtest-core-admin";
/// Seats per row of every seeded performance.
pub const SEATS_PER_ROW: u32 = 50;
/// Lifetime of the fans' identity tokens, in seconds: longer than any run,
/// so no fan's identity (nor the admission derived from it) lapses midway.
pub const IDENTITY_TTL_SECONDS: u64 = 4 * 3_600;
/// Sign-ins in flight at once: enough to keep the issuer's cores busy.
const SIGN_IN_CONCURRENCY: usize = 32;

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
    // The tools sign in thousands of fans; a debug build of the issuer
    // would make that minutes.
    let issuer_config = config.clone();
    tokio::task::spawn_blocking(move || {
        stack::block_locked(&issuer_config, issuer_process::up_release(&issuer_config))
    })
    .await??;
    eprintln!("{tool}: starting services (release build)");
    services::start_with(config, endpoints, true, &extra).await
}

/// The stack's identity issuer, reached with `http`.
pub fn issuer(http: reqwest::Client, endpoints: &Endpoints) -> Issuer {
    Issuer::new(http, endpoints.issuer_url.clone())
}

/// Signs each of `fans` in through the issuer's `POST /token`, as each
/// fan's app would, [`SIGN_IN_CONCURRENCY`] at a time; returns their
/// identity tokens in order, valid for [`IDENTITY_TTL_SECONDS`].
///
/// # Errors
/// When the issuer is unreachable or refuses a fan.
pub async fn sign_in_all(issuer: &Issuer, fans: &[String]) -> Result<Vec<String>> {
    let results: Vec<Result<String>> = futures::stream::iter(fans)
        .map(|fan| async move {
            issuer
                .identity_token(fan, IDENTITY_TTL_SECONDS)
                .await
                .with_context(|| format!("signing {fan} in"))
        })
        .buffered(SIGN_IN_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
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
/// starting in 30 days, at most 4 seats per order (admission session) and
/// the default limit per fan. Returns the performance
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
    let show = create_concert_show(client, title, artist, venue, sections).await?;
    Ok((show.performance, show.seat_ids))
}

/// A concert of one performance, as [`create_show`] makes it.
#[derive(Debug, Clone)]
pub struct Show {
    /// The concert's id (coupon scopes, the ranking).
    pub concert: i64,
    /// Its one performance.
    pub performance: i64,
    /// The performance's seat ids, ascending.
    pub seat_ids: Vec<i64>,
}

/// [`create_show`], also returning the concert's id.
///
/// # Errors
/// When core-service refuses or is unreachable.
pub async fn create_concert_show(
    client: &Client,
    title: &str,
    artist: &str,
    venue: &str,
    sections: Vec<NewSection>,
) -> Result<Show> {
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
                // The default per-fan limit: each seeded fan buys once.
                max_tickets_per_fan: None,
                sections,
            }],
        })
        .await?;
    let concert = created.concert_id;
    let performance = created
        .performances
        .into_iter()
        .next()
        .context("no performance in the reply")?;
    Ok(Show {
        concert,
        performance: performance.id,
        seat_ids: performance.seat_ids,
    })
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
        claim_within_seconds: None,
        latency_target_ms: None,
        opens_at: None,
        state: RoomState::Open,
    }
}

/// A fan seeded into a waiting room.
#[derive(Debug, Clone)]
pub struct Entered {
    /// The fan's id (their identity's `sub`).
    pub user: String,
    /// The fan's identity token.
    pub identity: String,
    /// The fan's queue token, or their access token once admitted.
    pub token: String,
}

/// Signs in `count` fans named `<prefix>-<i>` and enters them into
/// `event`'s line, 64 at a time; returns each with their queue token, or
/// (with `until_active`) polls each every 200 ms until admitted and
/// returns access tokens, in fan order.
///
/// # Errors
/// When any call is refused, or a fan is not admitted within 120 s.
pub async fn enter_many(
    client: &Client,
    issuer: &Issuer,
    event: &str,
    prefix: &str,
    count: usize,
    until_active: bool,
) -> Result<Vec<Entered>> {
    let users: Vec<String> = (0..count).map(|i| format!("{prefix}-{i}")).collect();
    let identities = sign_in_all(issuer, &users).await?;
    let results: Vec<Result<Entered>> = futures::stream::iter(users.into_iter().zip(identities))
        .map(|(user, identity)| async move {
            let fan = client.as_fan(&identity);
            let mut ticket = fan.enter(event).await?;
            let token = if until_active {
                let deadline = Instant::now() + Duration::from_secs(120);
                while ticket.status != FanStatus::Active {
                    ensure!(Instant::now() < deadline, "{user} not admitted in 120 s");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    ticket = fan.poll(event, &ticket.queue_token).await?;
                }
                ticket.access_token.context("no access_token")?
            } else {
                ticket.queue_token
            };
            Ok(Entered {
                user,
                identity,
                token,
            })
        })
        .buffered(64)
        .collect()
        .await;
    results.into_iter().collect()
}
