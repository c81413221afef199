//! Schema migrations (sea-orm-migration), applied by `core-service migrate`
//! and by tests on a fresh database.
//!
//! The schema in one picture:
//! - `users` (prepaid `balance_krw`, never negative) ← `ledger_entries`
//!   (`charge` | `spend` | `refund`, with the balance after each entry);
//! - `concerts` ← `performances` ← `seats`. A seat carries its live claim:
//!   `status` `free` | `held` | `sold`, `reservation_id`, `held_until`. A
//!   `held` seat whose `held_until` has passed counts as free (lazy expiry);
//! - `reservations` (`held` → `confirmed` | `expired` | `cancelled`) and
//!   `reservation_seats`, whose partial unique index on `seat_id WHERE
//!   active` is the backstop: a seat has at most one live hold or confirmed
//!   sale, whatever the application does. Re-holding an expired seat
//!   deactivates the old row in the same transaction;
//! - `payments` (one per reservation, unique per user and idempotency key)
//!   and `idempotency_keys` (the claim and the stored response);
//! - `outbox`, written in the same transaction as the business change. Its
//!   DDL is [`events::outbox::SCHEMA_SQL`], the one definition the relay
//!   and its tests also use, run by the initial migration after the tables
//!   above.
//!
//! The second migration adds what identity made possible: each reservation
//! records the waiting-room admission session it was made in
//! (`reservations.session_id`), and each performance its purchase limit per
//! fan (`performances.max_tickets_per_fan`), with the index the limit
//! checks read: a fan's reservations of one performance.
//!
//! The third adds first-come coupons and the popular-concert ranking:
//! - `coupon_campaigns` (quantity, window, discount, and `issued`, the
//!   exact counter a claim increments with a conditional `UPDATE`, so
//!   Postgres alone never issues more than `quantity`) ← `coupons` (one
//!   per fan and campaign, numbered 1…quantity; `used_at` and
//!   `payment_id` set once, by the payment that spent it);
//! - `ledger_entries` and `payments` record the price, the discount and
//!   the coupon beside the amount paid; a coupon pays for at most one
//!   payment (unique `payments.coupon_code`), and a coupon may bring the
//!   amount paid to 0 KRW;
//! - `ranking_sales`: every `payment.completed` the ranking consumer saw,
//!   once per payment, with whether it reached Redis yet (`applied`), so
//!   nothing is lost while Redis is down; `ranking_snapshots`: the top 100
//!   of each window every 10 minutes, the fallback while Redis is down.

use sea_orm_migration::prelude::*;

/// Every migration, oldest first.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(INITIAL), Box::new(SESSIONS), Box::new(PROMOTIONS)]
    }
}

/// A migration that runs SQL scripts: `up` in order, or `down`.
struct Scripted {
    name: &'static str,
    up: &'static [&'static str],
    down: &'static str,
}

impl MigrationName for Scripted {
    fn name(&self) -> &str {
        self.name
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Scripted {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for script in self.up {
            db.execute_unprepared(script).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(self.down)
            .await?;
        Ok(())
    }
}

/// The booking tables, then the outbox.
const INITIAL: Scripted = Scripted {
    name: "m20261122_000001_initial",
    up: &[INITIAL_UP, events::outbox::SCHEMA_SQL],
    down: INITIAL_DOWN,
};

/// Sessions on reservations and the per-fan limit on performances.
const SESSIONS: Scripted = Scripted {
    name: "m20261201_000002_sessions_and_fan_limits",
    up: &[SESSIONS_UP],
    down: SESSIONS_DOWN,
};

/// Coupons and the concert ranking.
const PROMOTIONS: Scripted = Scripted {
    name: "m20261202_000003_coupons_and_rankings",
    up: &[PROMOTIONS_UP],
    down: PROMOTIONS_DOWN,
};

/// The booking tables; the initial migration adds the outbox after them.
const INITIAL_UP: &str = r#"
CREATE TABLE users (
  id          TEXT PRIMARY KEY CHECK (octet_length(id) BETWEEN 1 AND 64),
  balance_krw BIGINT NOT NULL DEFAULT 0 CHECK (balance_krw >= 0),
  created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE ledger_entries (
  id                BIGSERIAL PRIMARY KEY,
  user_id           TEXT NOT NULL REFERENCES users (id),
  kind              TEXT NOT NULL CHECK (kind IN ('charge', 'spend', 'refund')),
  amount_krw        BIGINT NOT NULL CHECK (amount_krw > 0),
  balance_after_krw BIGINT NOT NULL CHECK (balance_after_krw >= 0),
  payment_id        UUID,
  created_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX ledger_entries_by_user ON ledger_entries (user_id, id DESC);

CREATE TABLE concerts (
  id         BIGSERIAL PRIMARY KEY,
  title      TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
  artist     TEXT NOT NULL CHECK (length(artist) BETWEEN 1 AND 200),
  venue      TEXT NOT NULL CHECK (length(venue) BETWEEN 1 AND 200),
  created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE performances (
  id                  BIGSERIAL PRIMARY KEY,
  concert_id          BIGINT NOT NULL REFERENCES concerts (id),
  starts_at           TIMESTAMPTZ NOT NULL,
  sale_opens_at       TIMESTAMPTZ NOT NULL,
  max_seats_per_order INT NOT NULL CHECK (max_seats_per_order BETWEEN 1 AND 50),
  CHECK (sale_opens_at <= starts_at)
);
CREATE INDEX performances_by_concert ON performances (concert_id, starts_at);

CREATE TABLE reservations (
  id             UUID PRIMARY KEY,
  user_id        TEXT NOT NULL CHECK (octet_length(user_id) BETWEEN 1 AND 64),
  performance_id BIGINT NOT NULL REFERENCES performances (id),
  status         TEXT NOT NULL CHECK (status IN ('held', 'confirmed', 'expired', 'cancelled')),
  amount_krw     BIGINT NOT NULL CHECK (amount_krw > 0),
  held_until     TIMESTAMPTZ NOT NULL,
  created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX reservations_by_user ON reservations (user_id, created_at DESC);
-- Overdue holds, for the expiry sweeper: only live holds are indexed.
CREATE INDEX reservations_held_until ON reservations (held_until) WHERE status = 'held';

CREATE TABLE seats (
  id             BIGSERIAL PRIMARY KEY,
  performance_id BIGINT NOT NULL REFERENCES performances (id),
  section        TEXT NOT NULL CHECK (length(section) BETWEEN 1 AND 32),
  row_label      TEXT NOT NULL CHECK (length(row_label) BETWEEN 1 AND 16),
  number         INT NOT NULL CHECK (number > 0),
  grade          TEXT NOT NULL CHECK (length(grade) BETWEEN 1 AND 16),
  price_krw      BIGINT NOT NULL CHECK (price_krw > 0),
  status         TEXT NOT NULL DEFAULT 'free' CHECK (status IN ('free', 'held', 'sold')),
  reservation_id UUID REFERENCES reservations (id) DEFERRABLE INITIALLY DEFERRED,
  held_until     TIMESTAMPTZ,
  UNIQUE (performance_id, section, row_label, number),
  CHECK ((status = 'free') = (reservation_id IS NULL)),
  CHECK ((status = 'held') = (held_until IS NOT NULL))
);
CREATE INDEX seats_by_performance ON seats (performance_id, id);
CREATE INDEX seats_by_reservation ON seats (reservation_id) WHERE reservation_id IS NOT NULL;

CREATE TABLE reservation_seats (
  reservation_id UUID NOT NULL REFERENCES reservations (id),
  seat_id        BIGINT NOT NULL REFERENCES seats (id),
  price_krw      BIGINT NOT NULL CHECK (price_krw > 0),
  active         BOOLEAN NOT NULL DEFAULT true,
  PRIMARY KEY (reservation_id, seat_id)
);
-- The backstop: one live hold or confirmed sale per seat.
CREATE UNIQUE INDEX reservation_seats_one_live_claim ON reservation_seats (seat_id) WHERE active;

CREATE TABLE payments (
  id              UUID PRIMARY KEY,
  user_id         TEXT NOT NULL REFERENCES users (id),
  reservation_id  UUID NOT NULL UNIQUE REFERENCES reservations (id),
  idempotency_key TEXT NOT NULL,
  amount_krw      BIGINT NOT NULL CHECK (amount_krw > 0),
  status          TEXT NOT NULL CHECK (status IN ('completed', 'refunded')),
  paid_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
  UNIQUE (user_id, idempotency_key)
);

CREATE TABLE idempotency_keys (
  user_id         TEXT NOT NULL,
  key             TEXT NOT NULL CHECK (octet_length(key) BETWEEN 1 AND 255),
  fingerprint     TEXT NOT NULL,
  state           TEXT NOT NULL CHECK (state IN ('in_flight', 'completed')),
  locked_until    TIMESTAMPTZ NOT NULL,
  response_status SMALLINT,
  response_body   JSONB,
  created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, key),
  CHECK ((state = 'completed') = (response_body IS NOT NULL))
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
"#;

const INITIAL_DOWN: &str = r#"
DROP TABLE outbox;
DROP TABLE idempotency_keys;
DROP TABLE payments;
DROP TABLE reservation_seats;
DROP TABLE seats;
DROP TABLE reservations;
DROP TABLE performances;
DROP TABLE concerts;
DROP TABLE ledger_entries;
DROP TABLE users;
"#;

/// [`SESSIONS`]: existing performances get a limit of 8, or their `max_seats_per_order`
/// when larger: the default a new performance gets when its body names
/// none (see `api::NewPerformance`). Reservations made before sessions were
/// recorded keep a `NULL` session and count for no session's limit.
const SESSIONS_UP: &str = r#"
ALTER TABLE reservations
  ADD COLUMN session_id TEXT CHECK (octet_length(session_id) BETWEEN 1 AND 128);
ALTER TABLE performances
  ADD COLUMN max_tickets_per_fan INT NOT NULL DEFAULT 8
  CHECK (max_tickets_per_fan BETWEEN 1 AND 1000);
UPDATE performances SET max_tickets_per_fan = max_seats_per_order
  WHERE max_seats_per_order > max_tickets_per_fan;
-- The purchase-limit check of every hold: a fan's live holds and purchases
-- of one performance (ended reservations are not indexed).
CREATE INDEX reservations_by_fan_performance ON reservations (user_id, performance_id)
  WHERE status IN ('held', 'confirmed');
"#;

const SESSIONS_DOWN: &str = r#"
DROP INDEX reservations_by_fan_performance;
ALTER TABLE performances DROP COLUMN max_tickets_per_fan;
ALTER TABLE reservations DROP COLUMN session_id;
"#;

/// [`PROMOTIONS`]. A campaign's discount is either a KRW amount or a
/// percentage with a KRW cap; its scope is a concert, a performance, or
/// neither (any show).
const PROMOTIONS_UP: &str = r#"
CREATE TABLE coupon_campaigns (
  id                  BIGSERIAL PRIMARY KEY,
  name                TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  concert_id          BIGINT REFERENCES concerts (id),
  performance_id      BIGINT REFERENCES performances (id),
  discount_kind       TEXT NOT NULL CHECK (discount_kind IN ('amount', 'percent')),
  discount_amount_krw BIGINT CHECK (discount_amount_krw > 0),
  discount_percent    INT CHECK (discount_percent BETWEEN 1 AND 100),
  max_discount_krw    BIGINT CHECK (max_discount_krw > 0),
  quantity            INT NOT NULL CHECK (quantity BETWEEN 1 AND 10000000),
  issued              INT NOT NULL DEFAULT 0,
  starts_at           TIMESTAMPTZ NOT NULL,
  ends_at             TIMESTAMPTZ NOT NULL,
  valid_seconds       BIGINT NOT NULL CHECK (valid_seconds BETWEEN 60 AND 31536000),
  reconciled_at       TIMESTAMPTZ,
  reconcile_fixes     BIGINT NOT NULL DEFAULT 0,
  last_reconcile      JSONB,
  created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
  CHECK (issued BETWEEN 0 AND quantity),
  CHECK (ends_at > starts_at),
  CHECK (concert_id IS NULL OR performance_id IS NULL),
  CHECK ((discount_kind = 'amount') = (discount_amount_krw IS NOT NULL)),
  CHECK ((discount_kind = 'percent') = (discount_percent IS NOT NULL AND max_discount_krw IS NOT NULL))
);
-- Campaigns whose Redis keys may still live, for the reconciliation job.
CREATE INDEX coupon_campaigns_by_end ON coupon_campaigns (ends_at);

CREATE TABLE coupons (
  code        TEXT PRIMARY KEY CHECK (octet_length(code) BETWEEN 8 AND 64),
  campaign_id BIGINT NOT NULL REFERENCES coupon_campaigns (id),
  user_id     TEXT NOT NULL CHECK (octet_length(user_id) BETWEEN 1 AND 64),
  sequence    INT NOT NULL CHECK (sequence > 0),
  issued_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
  expires_at  TIMESTAMPTZ NOT NULL,
  used_at     TIMESTAMPTZ,
  payment_id  UUID,
  UNIQUE (campaign_id, user_id),
  UNIQUE (campaign_id, sequence),
  CHECK ((used_at IS NULL) = (payment_id IS NULL))
);
CREATE INDEX coupons_by_user ON coupons (user_id, issued_at DESC);

ALTER TABLE ledger_entries
  ADD COLUMN price_krw BIGINT CHECK (price_krw > 0),
  ADD COLUMN discount_krw BIGINT NOT NULL DEFAULT 0 CHECK (discount_krw >= 0),
  ADD COLUMN coupon_code TEXT,
  DROP CONSTRAINT ledger_entries_amount_krw_check,
  ADD CONSTRAINT ledger_entries_amount_krw_check
    CHECK (amount_krw > 0 OR (kind = 'spend' AND amount_krw = 0 AND discount_krw > 0));
ALTER TABLE payments
  ADD COLUMN price_krw BIGINT CHECK (price_krw > 0),
  ADD COLUMN discount_krw BIGINT NOT NULL DEFAULT 0 CHECK (discount_krw >= 0),
  ADD COLUMN coupon_code TEXT UNIQUE REFERENCES coupons (code),
  DROP CONSTRAINT payments_amount_krw_check,
  ADD CONSTRAINT payments_amount_krw_check
    CHECK (amount_krw > 0 OR (amount_krw = 0 AND discount_krw > 0));

CREATE TABLE ranking_sales (
  payment_id  UUID PRIMARY KEY,
  concert_id  BIGINT NOT NULL,
  tickets     INT NOT NULL CHECK (tickets > 0),
  paid_at     TIMESTAMPTZ NOT NULL,
  applied     BOOLEAN NOT NULL DEFAULT false,
  recorded_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Sales that have not reached Redis yet (Redis was down), oldest first.
CREATE INDEX ranking_sales_pending ON ranking_sales (recorded_at) WHERE NOT applied;
CREATE INDEX ranking_sales_by_time ON ranking_sales (paid_at);

CREATE TABLE ranking_snapshots (
  id          BIGSERIAL PRIMARY KEY,
  window_name TEXT NOT NULL CHECK (window_name IN ('1h', '24h')),
  taken_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
  items       JSONB NOT NULL
);
CREATE INDEX ranking_snapshots_latest ON ranking_snapshots (window_name, taken_at DESC);
"#;

const PROMOTIONS_DOWN: &str = r#"
DROP TABLE ranking_snapshots;
DROP TABLE ranking_sales;
ALTER TABLE payments DROP CONSTRAINT payments_amount_krw_check,
  DROP COLUMN coupon_code, DROP COLUMN discount_krw, DROP COLUMN price_krw,
  ADD CONSTRAINT payments_amount_krw_check CHECK (amount_krw > 0);
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_amount_krw_check,
  DROP COLUMN coupon_code, DROP COLUMN discount_krw, DROP COLUMN price_krw,
  ADD CONSTRAINT ledger_entries_amount_krw_check CHECK (amount_krw > 0);
DROP TABLE coupons;
DROP TABLE coupon_campaigns;
"#;
