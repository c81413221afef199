//! The admission loop: every tick, one admission script per registered room.
//!
//! Any number of instances run this loop at once. Correctness does not depend
//! on coordination: each tick is one atomic script, and the admission budget
//! is a token bucket stored with the room, so N instances together still
//! admit at most `admit_per_second` fans per second and never more than
//! `capacity` at a time.

use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic_health::server::HealthReporter;

use crate::{
    domain::{EventId, RoomState},
    metrics,
    store::Store,
};

/// Most admission calls per room and tick. With the per-call budget this
/// allows 1,000 fans per tick (5,000 per second at 200 ms), while a mass of
/// abandoned fans at the head is dropped without letting one room's
/// housekeeping monopolise its Redis master.
const MAX_CALLS_PER_TICK: usize = 10;
/// Rooms ticked concurrently by one instance.
const CONCURRENT_ROOMS: usize = 32;

type Health = onsale_proto::queue::v1::waiting_room_server::WaitingRoomServer<crate::grpc::GrpcApi>;

/// Runs until `shutdown` is cancelled. Redis failures are logged, counted
/// and reported through gRPC health; the loop keeps going and recovers when
/// Redis returns.
pub(crate) async fn run(
    store: Store,
    tick: Duration,
    enabled: bool,
    health: HealthReporter,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut healthy = true;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let ok = if enabled {
            tick_all(&store).await
        } else {
            store.ping().await
        };
        if ok != healthy {
            healthy = ok;
            if ok {
                health.set_serving::<Health>().await;
                tracing::info!("redis reachable again");
            } else {
                health.set_not_serving::<Health>().await;
            }
        }
    }
    tracing::info!("admission loop stopped");
}

/// One tick over every registered room; false when Redis failed.
async fn tick_all(store: &Store) -> bool {
    let rooms = match store.rooms().await {
        Ok(rooms) => rooms,
        Err(error) => {
            metrics::tick_failed();
            tracing::warn!(error = %platform::problem::ErrorChain(&error), "listing rooms failed");
            return false;
        }
    };
    let results = futures::stream::iter(rooms)
        .map(|event| async move { tick_room(store, &event).await })
        .buffer_unordered(CONCURRENT_ROOMS)
        .collect::<Vec<bool>>()
        .await;
    results.into_iter().all(|ok| ok)
}

/// Admission for one room: bounded calls until the room's work for this tick
/// is done. False when Redis failed.
async fn tick_room(store: &Store, event: &EventId) -> bool {
    let id = event.as_str();
    for _ in 0..MAX_CALLS_PER_TICK {
        let report = match store.admit(event).await {
            Ok(report) => report,
            Err(error) => {
                metrics::tick_failed();
                tracing::warn!(%event, error = %platform::problem::ErrorChain(&error), "admission tick failed");
                return false;
            }
        };
        metrics::admitted(id, report.admitted);
        metrics::exited(id, "expired", report.expired);
        metrics::exited(id, "no_show", report.no_shows);
        metrics::exited(id, "abandoned", report.abandoned);
        metrics::sizes(id, report.waiting, report.active);
        if report.state.is_none() || report.state == Some(RoomState::Closed) {
            // Settings gone or room closed: stop ticking it.
            if let Err(error) = store.unregister(event).await {
                tracing::warn!(%event, error = %platform::problem::ErrorChain(&error), "unregistering failed");
            }
            return true;
        }
        if !report.more {
            break;
        }
    }
    true
}
