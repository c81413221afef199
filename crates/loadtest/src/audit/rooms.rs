//! The waiting room's half of the audit, over every registered room (the
//! rooms the admission loop ticks): the active set within capacity, no
//! entry outliving its access token, no fan both waiting and active, and
//! every active fan with the admission session their token names.
//!
//! Closed rooms are unregistered and no longer ticked, so they are not
//! enumerated here.

use queue_service::{domain::EventId, layout};
use redis::{AsyncCommands, aio::ConnectionLike, cluster::ClusterClient};

use super::{Check, Options};

/// Index of [`layout::EVENT_KEY_NAMES`]: `cfg`, `waiting`, `active`,
/// `sessions`.
const CFG: usize = 0;
const WAITING: usize = 1;
const ACTIVE: usize = 2;
const SESSIONS: usize = 3;

/// Violations of one room, summed into the checks by [`audit`].
#[derive(Debug, Default)]
struct Room {
    over_capacity: u64,
    outlived: u64,
    waiting_and_active: u64,
    without_session: u64,
}

/// Connects to the cluster at `urls` and checks every registered room
/// under `options.key_prefix`. Returns the checks and the number of rooms.
///
/// # Errors
/// When Redis is unreachable or a key has another type than the layout's.
pub async fn audit(urls: &[String], options: &Options) -> redis::RedisResult<(Vec<Check>, u64)> {
    let client = ClusterClient::new(urls.to_vec())?;
    let mut conn = client.get_async_connection().await?;
    let prefix = &options.key_prefix;
    let ids: Vec<String> = conn.smembers(layout::rooms_key(prefix)).await?;
    let now_ms = server_ms(&mut conn).await?;
    let cutoff = now_ms - i64::try_from(options.grace_seconds * 1_000).unwrap_or(i64::MAX);
    let mut checks = [
        check(
            "active_set_within_capacity",
            "no room's active set holds more fans than its capacity",
        ),
        check(
            "no_admission_outlives_its_token",
            "no active-set entry stays past its access expiry plus the grace period",
        ),
        check(
            "no_fan_both_waiting_and_active",
            "no fan is in a room's line and its active set at once",
        ),
        check(
            "every_active_fan_has_a_session",
            "every active fan has the admission session their access token names",
        ),
    ];
    let mut rooms = 0;
    for id in ids {
        let Ok(event) = EventId::parse(&id) else {
            continue;
        };
        rooms += 1;
        let keys = layout::event_keys(prefix, &event);
        let room = audit_room(&mut conn, &keys, cutoff).await?;
        for (check, count) in checks.iter_mut().zip([
            room.over_capacity,
            room.outlived,
            room.waiting_and_active,
            room.without_session,
        ]) {
            if count > 0 {
                check.violations += count;
                if check.examples.len() < 5 {
                    check.examples.push(format!("{id} ({count})"));
                }
            }
        }
    }
    Ok((checks.into(), rooms))
}

fn check(name: &'static str, promise: &'static str) -> Check {
    Check {
        store: "redis",
        name,
        promise,
        violations: 0,
        examples: Vec::new(),
    }
}

/// The cluster's clock in ms since the epoch: the scripts stamp expiries
/// with Redis's `TIME`, so the audit compares against the same clock.
async fn server_ms(conn: &mut impl ConnectionLike) -> redis::RedisResult<i64> {
    let (seconds, micros): (i64, i64) = redis::cmd("TIME").query_async(conn).await?;
    Ok(seconds * 1_000 + micros / 1_000)
}

async fn audit_room(
    conn: &mut (impl ConnectionLike + Send),
    keys: &[String; 11],
    cutoff_ms: i64,
) -> redis::RedisResult<Room> {
    let capacity: Option<u64> = redis::cmd("HGET")
        .arg(&keys[CFG])
        .arg("capacity")
        .query_async(conn)
        .await?;
    let active: Vec<String> = redis::cmd("ZRANGE")
        .arg(&keys[ACTIVE])
        .arg(0)
        .arg(-1)
        .query_async(conn)
        .await?;
    let outlived: u64 = redis::cmd("ZCOUNT")
        .arg(&keys[ACTIVE])
        .arg("-inf")
        .arg(format!("({cutoff_ms}"))
        .query_async(conn)
        .await?;
    let mut room = Room {
        over_capacity: capacity.map_or(0, |c| (active.len() as u64).saturating_sub(c)),
        outlived,
        ..Room::default()
    };
    // The active set is bounded by the capacity, so one call per key.
    if !active.is_empty() {
        let waiting: Vec<Option<f64>> = redis::cmd("ZMSCORE")
            .arg(&keys[WAITING])
            .arg(&active)
            .query_async(conn)
            .await?;
        room.waiting_and_active = waiting.iter().filter(|s| s.is_some()).count() as u64;
        let sessions: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(&keys[SESSIONS])
            .arg(&active)
            .query_async(conn)
            .await?;
        room.without_session = sessions.iter().filter(|s| s.is_none()).count() as u64;
    }
    Ok(room)
}
