//! Seat maps built for a spike: a static layout read once per performance,
//! and availability snapshots rebuilt at most once per `seat_cache_ms`,
//! by one request at a time, however many holds land.
//!
//! Every body is serialized and compressed (gzip and brotli) once per
//! version, not once per request, and carries a strong entity tag, so a
//! client or a CDN that has the current version gets a 304 for the price
//! of a hash lookup. The availability version is a hash of the bitmap, the
//! same on every instance, so a delta (`?since=<version>`) can be served
//! by any instance that saw that version.
//!
//! # Layout
//! - `layout.rs`: [`Layout`], seats by section and row, the layout body,
//!   the legacy full seat map;
//! - `bitmap.rs`: [`Bitmap`], availability, its version and changes;
//! - `encoded.rs`: [`Encoded`] bodies and [`Coding`] negotiation;
//! - `best.rs`: the best-available rule ([`best::pick`]);
//! - `board.rs`: this process's picks and holds on top of a snapshot.

pub mod best;
mod bitmap;
pub mod board;
mod encoded;
mod layout;

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex, PoisonError, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

pub use self::{
    bitmap::Bitmap,
    encoded::{Coding, Encoded},
    layout::{Layout, SeatRow},
};
use crate::{
    api::seatmap::Availability,
    db::Db,
    domain::PerformanceId,
    metrics,
    store::{StoreError, catalog},
};

/// Versions kept per performance for deltas: 64 snapshots, about a minute
/// of changes at the default `seat_cache_ms`.
const HISTORY: usize = 64;
/// Performances kept when the map grows past this many: the ones used in
/// the last [`IDLE`].
const PRUNE_ABOVE: usize = 1_024;
/// Longest wait of a reader for a new legacy full map when an older one
/// can be served: a 1,000-seat map builds well within it, a 50,000-seat
/// one (about 5 MB of JSON, compressed twice) does not.
const LEGACY_WAIT: Duration = Duration::from_millis(50);
/// How long an unused performance stays loaded once pruning starts.
const IDLE: Duration = Duration::from_secs(600);

/// The availability of one performance at one moment, with its bodies.
#[derive(Debug)]
pub struct Snapshot {
    /// When the read that made it started: every change committed before
    /// then is in it.
    pub read_at: Instant,
    /// Seats that could be held then.
    pub free: Bitmap,
    /// The version (see [`Bitmap::version`]).
    pub version: String,
    full: Encoded,
    /// Bodies made from these seats: shared by every snapshot that reads
    /// the same seats again.
    bodies: Arc<Bodies>,
}

/// The bodies built lazily for one version.
#[derive(Debug, Default)]
struct Bodies {
    /// The legacy full seat map, once built.
    legacy: std::sync::OnceLock<Arc<Encoded>>,
    /// Whether a build of `legacy` has been started.
    legacy_started: AtomicBool,
    /// Woken when a build of `legacy` ends.
    legacy_ready: tokio::sync::Notify,
    /// Deltas to this version, by the version they start from.
    deltas: Mutex<HashMap<String, Arc<Encoded>>>,
}

impl Snapshot {
    /// The snapshot of `free` in `layout`, read at `read_at`.
    pub fn new(layout: &Layout, free: Bitmap, read_at: Instant) -> Self {
        let version = free.version();
        let body = Availability {
            performance_id: layout.performance_id,
            version: version.clone(),
            seats_available: free.count(),
            free: Some(free.to_base64()),
            since: None,
            freed: None,
            taken: None,
        };
        Self {
            read_at,
            full: Encoded::new(version.clone(), json(&body)),
            version,
            free,
            bodies: Arc::default(),
        }
    }

    /// The same seats read again at `read_at`: the bodies are kept, so an
    /// unchanged performance costs no serialization or compression.
    fn renewed(&self, read_at: Instant) -> Self {
        Self {
            read_at,
            free: self.free.clone(),
            version: self.version.clone(),
            full: self.full.clone(),
            bodies: self.bodies.clone(),
        }
    }

    /// Seats that could be held when it was read.
    pub fn seats_available(&self) -> u32 {
        self.free.count()
    }
}

/// Everything kept for one performance.
#[derive(Debug)]
pub struct PerformanceMap {
    /// Where each seat is.
    pub layout: Arc<Layout>,
    /// This process's picks and holds on top of the snapshot.
    pub board: Arc<board::Board>,
    layout_body: Encoded,
    current: RwLock<Option<Arc<Snapshot>>>,
    history: Mutex<VecDeque<(String, Arc<Bitmap>)>>,
    rebuild: tokio::sync::Mutex<()>,
    last_used_ms: AtomicU64,
    /// The latest legacy full map built, served while a newer one builds.
    last_legacy: RwLock<Option<Arc<Encoded>>>,
}

impl PerformanceMap {
    fn new(layout: Layout) -> Self {
        let body = json(&layout.body());
        let tag = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&body));
        Self {
            layout_body: Encoded::new(tag, body),
            layout: Arc::new(layout),
            board: Arc::new(board::Board::default()),
            current: RwLock::new(None),
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
            rebuild: tokio::sync::Mutex::new(()),
            last_used_ms: AtomicU64::new(0),
            last_legacy: RwLock::new(None),
        }
    }

    fn current(&self) -> Option<Arc<Snapshot>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn install(&self, snapshot: Arc<Snapshot>) {
        let mut history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        if history.front().is_none_or(|(v, _)| *v != snapshot.version) {
            if history.len() == HISTORY {
                history.pop_back();
            }
            history.push_front((snapshot.version.clone(), Arc::new(snapshot.free.clone())));
        }
        drop(history);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(snapshot);
    }

    fn older(&self, version: &str) -> Option<Arc<Bitmap>> {
        self.history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(v, _)| v == version)
            .map(|(_, b)| b.clone())
    }
}

type Slot = Arc<tokio::sync::OnceCell<Arc<PerformanceMap>>>;

/// Seat maps of every performance this process serves. Cheap to share
/// behind an `Arc`.
#[derive(Debug)]
pub struct SeatMaps {
    db: Db,
    interval: Duration,
    epoch: Instant,
    maps: Mutex<HashMap<i64, Slot>>,
}

impl SeatMaps {
    /// Seat maps read from `db`, availability rebuilt at most once per
    /// `interval` (zero: on every read).
    pub fn new(db: Db, interval: Duration) -> Self {
        Self {
            db,
            interval,
            epoch: Instant::now(),
            maps: Mutex::new(HashMap::new()),
        }
    }

    /// The performance's map, its layout loaded once (single-flight).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown performance; store errors.
    pub async fn map(&self, id: PerformanceId) -> Result<Arc<PerformanceMap>, StoreError> {
        let slot = {
            let mut maps = self.maps.lock().unwrap_or_else(PoisonError::into_inner);
            if maps.len() > PRUNE_ABOVE {
                let now = self.now_ms();
                let idle = IDLE.as_millis() as u64;
                maps.retain(|_, slot| {
                    slot.get().is_some_and(|m| {
                        now.saturating_sub(m.last_used_ms.load(Ordering::Relaxed)) < idle
                    })
                });
            }
            maps.entry(id.get()).or_default().clone()
        };
        let loaded = slot
            .get_or_try_init(|| async {
                let seats = catalog::seat_rows(&self.db, id).await?;
                Ok::<_, StoreError>(Arc::new(PerformanceMap::new(Layout::new(id.get(), seats))))
            })
            .await;
        match loaded {
            Ok(map) => {
                map.last_used_ms.store(self.now_ms(), Ordering::Relaxed);
                Ok(map.clone())
            }
            Err(error) => {
                // An unknown id must not stay in the map.
                self.maps
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&id.get());
                Err(error)
            }
        }
    }

    /// Performances whose map was used (read, or touched by a hold or a
    /// payment) within `within`, in no particular order.
    pub fn recently_used(&self, within: Duration) -> Vec<PerformanceId> {
        let now = self.now_ms();
        let within = u64::try_from(within.as_millis()).unwrap_or(u64::MAX);
        self.maps
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, slot)| {
                slot.get().is_some_and(|m| {
                    now.saturating_sub(m.last_used_ms.load(Ordering::Relaxed)) <= within
                })
            })
            .filter_map(|(id, _)| PerformanceId::new(*id).ok())
            .collect()
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The availability of `map`: read after `read_after` when given,
    /// otherwise at most `interval` old, or older while another request is
    /// rebuilding it (a read without `read_after` never waits when there
    /// is a snapshot to serve). One rebuild at a time: callers that need a
    /// newer read queue on the rebuild lock, and the first one's rebuild
    /// serves every caller that queued before it started.
    ///
    /// # Errors
    /// Store errors of the rebuild.
    pub async fn snapshot(
        &self,
        id: PerformanceId,
        map: &PerformanceMap,
        read_after: Option<Instant>,
    ) -> Result<Arc<Snapshot>, StoreError> {
        let fresh = |s: &Snapshot| match read_after {
            Some(after) => s.read_at >= after,
            None => s.read_at.elapsed() < self.interval,
        };
        let current = map.current();
        if let Some(snapshot) = current.as_ref().filter(|s| fresh(s)) {
            metrics::seat_map_read("fresh");
            return Ok(snapshot.clone());
        }
        let _guard = match (map.rebuild.try_lock(), current) {
            (Ok(guard), _) => guard,
            // Someone is rebuilding: serve what there is, unless the
            // caller needs a newer read.
            (Err(_), Some(stale)) if read_after.is_none() => {
                metrics::seat_map_read("stale");
                return Ok(stale);
            }
            (Err(_), _) => map.rebuild.lock().await,
        };
        // The rebuild this caller waited for (or one that finished between
        // the first look and the lock) may be recent enough.
        if let Some(snapshot) = map.current().filter(|s| fresh(s)) {
            metrics::seat_map_read("fresh");
            return Ok(snapshot);
        }
        let read_at = Instant::now();
        let ids = catalog::available_seat_ids(&self.db, id).await?;
        let mut free = Bitmap::empty(map.layout.len());
        for seat in ids {
            if let Some(index) = map.layout.index_of(seat) {
                free.set(index);
            }
        }
        let snapshot = Arc::new(match map.current() {
            Some(previous) if previous.free == free => previous.renewed(read_at),
            _ => Snapshot::new(&map.layout, free, read_at),
        });
        map.install(snapshot.clone());
        metrics::seat_map_rebuilt(read_at.elapsed());
        Ok(snapshot)
    }

    /// The layout body of `id`.
    ///
    /// # Errors
    /// As [`SeatMaps::map`].
    pub async fn layout(&self, id: PerformanceId) -> Result<Encoded, StoreError> {
        Ok(self.map(id).await?.layout_body.clone())
    }

    /// The availability body of `id`: a delta from `since` when this
    /// process still knows that version, else the full bitmap.
    ///
    /// # Errors
    /// As [`SeatMaps::map`] and [`SeatMaps::snapshot`].
    pub async fn availability(
        &self,
        id: PerformanceId,
        since: Option<&str>,
    ) -> Result<Encoded, StoreError> {
        let map = self.map(id).await?;
        let snapshot = self.snapshot(id, &map, None).await?;
        let Some(since) = since else {
            return Ok(snapshot.full.clone());
        };
        if let Some(delta) = snapshot
            .bodies
            .deltas
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(since)
        {
            return Ok((**delta).clone());
        }
        let Some((freed, taken)) = map
            .older(since)
            .and_then(|older| snapshot.free.changes_since(&older))
        else {
            return Ok(snapshot.full.clone());
        };
        let ids = |indices: Vec<u32>| indices.into_iter().map(|i| map.layout.id_of(i)).collect();
        let body = Availability {
            performance_id: id.get(),
            version: snapshot.version.clone(),
            seats_available: snapshot.seats_available(),
            free: None,
            since: Some(since.to_owned()),
            freed: Some(ids(freed)),
            taken: Some(ids(taken)),
        };
        let delta = Arc::new(Encoded::new(snapshot.version.clone(), json(&body)));
        let mut deltas = snapshot
            .bodies
            .deltas
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if deltas.len() < HISTORY {
            deltas.insert(since.to_owned(), delta.clone());
        }
        Ok((*delta).clone())
    }

    /// The legacy full seat map of `id` (every seat with its
    /// availability), built once per version by one task off the async
    /// threads. A reader waits for the build at most [`LEGACY_WAIT`] when
    /// an older map exists, and is served the older one after that (as
    /// `stale-while-revalidate` would), so a stadium's multi-megabyte
    /// rebuild never queues requests behind it.
    ///
    /// # Errors
    /// As [`SeatMaps::map`] and [`SeatMaps::snapshot`]; a build that
    /// panicked.
    pub async fn seat_map(&self, id: PerformanceId) -> Result<Arc<Encoded>, StoreError> {
        let map = self.map(id).await?;
        let snapshot = self.snapshot(id, &map, None).await?;
        let bodies = snapshot.bodies.clone();
        if let Some(body) = bodies.legacy.get() {
            return Ok(body.clone());
        }
        let ready = bodies.legacy_ready.notified();
        tokio::pin!(ready);
        ready.as_mut().enable();
        if !bodies.legacy_started.swap(true, Ordering::AcqRel) {
            tokio::spawn(build_legacy(map.clone(), snapshot));
        }
        if let Some(body) = bodies.legacy.get() {
            return Ok(body.clone());
        }
        let previous = map
            .last_legacy
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match previous {
            Some(previous) => {
                let _ = tokio::time::timeout(LEGACY_WAIT, ready).await;
                Ok(bodies.legacy.get().cloned().unwrap_or(previous))
            }
            None => {
                ready.await;
                bodies
                    .legacy
                    .get()
                    .cloned()
                    .ok_or(StoreError::Invariant("building a seat map failed"))
            }
        }
    }
}

/// Builds the legacy map of `snapshot`, keeps it as the map's latest, and
/// wakes the readers waiting for it (also when the build failed, so none
/// waits forever; the next reader then starts another build).
async fn build_legacy(map: Arc<PerformanceMap>, snapshot: Arc<Snapshot>) {
    let layout = map.layout.clone();
    let source = snapshot.clone();
    let built = tokio::task::spawn_blocking(move || {
        let body = json(&layout.seat_map(&source.free));
        Arc::new(Encoded::new(source.version.clone(), body))
    })
    .await;
    let bodies = &snapshot.bodies;
    match built {
        Ok(body) => {
            let _ = bodies.legacy.set(body.clone());
            *map.last_legacy
                .write()
                .unwrap_or_else(PoisonError::into_inner) = Some(body);
        }
        Err(error) => {
            tracing::error!(%error, "building a seat map panicked");
            bodies.legacy_started.store(false, Ordering::Release);
        }
    }
    bodies.legacy_ready.notify_waiters();
}

/// `value` as JSON bytes. Serializing these plain structs cannot fail.
fn json(value: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}
