//! The SQL text of the hot-path statements, one file each in `sql/`.
//! Public so that the load-test tool's raw baseline (pgbench) runs the very
//! same text as the service; `$n` parameters become pgbench variables there.

/// The hold's `BEGIN`. The claim binds its seat ids as one `int8[]`, whose
/// length the planner cannot see in a generic plan; it assumes ten
/// elements, prices the generic plan above a one-seat custom plan, and so
/// re-plans the claim on every execution (measured with
/// `pg_stat_statements`: one plan per call, about 230 µs of planning per
/// hold, against one plan per ~300 calls for the same text with an
/// `ARRAY[$1]` literal). The generic plan is the same index scan on
/// `seats_by_performance` for any seat count, so the hold forces it.
pub const HOLD_BEGIN: &str = include_str!("sql/hold_begin.sql");
/// Serializes the holds of one fan (`$1`) for one performance (`$2`) with
/// a transaction-scoped advisory lock on a hash of both, so the purchase
/// limits below are checked against every earlier hold. It runs as a
/// statement of its own: a statement reads the snapshot taken when it
/// started, so the count must start after the lock is granted to see the
/// hold that held it.
pub const HOLD_LOCK_FAN: &str = include_str!("sql/hold_lock_fan.sql");
/// The database's `now()` and the seats counted against the purchase
/// limits: those of admission session `$3` and those of fan `$1` for
/// performance `$2`, each in live holds (not lapsed) and purchases.
pub const HOLD_FAN_SEATS: &str = include_str!("sql/hold_fan_seats.sql");
/// Claims free (or lapsed) seats of one performance for a hold.
pub const HOLD_CLAIM: &str = include_str!("sql/hold_claim.sql");
/// Deactivates the lapsed claims that a hold takes over.
pub const HOLD_RELEASE_EXPIRED_CLAIMS: &str = include_str!("sql/hold_release_expired_claims.sql");
/// Inserts the reservation of a hold (`$13`: its admission session), with
/// its outbox row.
pub const HOLD_INSERT_RESERVATION: &str = include_str!("sql/hold_insert_reservation.sql");
/// A reservation's header (owner, performance, state, expiry).
pub const RESERVATION_HEADER: &str = include_str!("sql/reservation_header.sql");
/// Claims a payment's idempotency key (or finds the earlier claim).
pub const PAY_CLAIM_KEY: &str = include_str!("sql/pay_claim_key.sql");
/// Locks the reservation being paid (`FOR UPDATE NOWAIT`).
pub const PAY_LOCK_RESERVATION: &str = include_str!("sql/pay_lock_reservation.sql");
/// Marks the reservation's seats sold.
pub const PAY_SELL_SEATS: &str = include_str!("sql/pay_sell_seats.sql");
/// Debits the buyer's prepaid balance (KRW), refusing to go below zero.
pub const PAY_DEBIT: &str = include_str!("sql/pay_debit.sql");
/// Records the payment, its ledger entry (amount paid `$2`, price `$14`,
/// discount `$15`, coupon code `$16` or `NULL`) and its outbox row.
pub const PAY_RECORD: &str = include_str!("sql/pay_record.sql");
/// Issues a coupon of campaign `$1` to fan `$2` with code `$3`: the
/// campaign's conditional counter increment and the coupon's insert, in one
/// statement (see `store::coupons`); returns the coupon with its
/// campaign's name, scope and discount.
pub const COUPON_ISSUE: &str = include_str!("sql/coupon_issue.sql");
/// Spends coupon `$1` of fan `$2` for payment `$3` of performance `$4`, if
/// unused, unexpired and in scope; returns the campaign's discount.
pub const COUPON_SPEND: &str = include_str!("sql/coupon_spend.sql");
