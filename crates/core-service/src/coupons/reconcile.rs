//! Reconciliation: makes a campaign's Redis gate match Postgres, the
//! record, and reports what differed.
//!
//! Differences arise when a compensation failed (a fan in the set without
//! a coupon: fewer fans get through than stock remains), when claims took
//! the Postgres path while Redis was down, or when a Redis node lost data
//! in a failover (fans with a coupon missing from the set). The repair adds
//! the missing holders, removes the fans without a coupon, and sets the
//! counter to the set's size.
//!
//! A claim reserved in Redis whose Postgres write is still running when
//! the job reads Postgres looks like a fan without a coupon and is removed;
//! its coupon is added back by the next pass. Meanwhile Redis lets one more
//! fan through, whom Postgres refuses if the stock is gone: the record is
//! never wrong, the gate only lets an extra fan try.

use chrono::Utc;

use super::{CouponError, gate::CouponGate};
use crate::{
    api::coupons::Reconciliation,
    db::Db,
    metrics,
    store::coupons::{self as store, CampaignRule},
};

/// Reconciles one campaign, keeping its keys `ttl_seconds`, and records
/// the report on the campaign.
///
/// # Errors
/// [`CouponError::Store`], [`CouponError::Redis`]: nothing is recorded,
/// and the next pass tries again.
pub async fn campaign(
    db: &Db,
    gate: &CouponGate,
    rule: &CampaignRule,
    ttl_seconds: u64,
) -> Result<Reconciliation, CouponError> {
    let redis = gate.state(rule.id).await?;
    let holders = store::holders(db, rule.id).await?;
    let (add, remove) = differences(&holders, &redis.fans);
    let (added, removed, issued) = gate.repair(rule.id, &add, &remove, ttl_seconds).await?;
    let counter_off = redis.issued != Some(issued) && !(redis.issued.is_none() && issued == 0);
    let report = Reconciliation {
        campaign_id: rule.id.get(),
        at: Utc::now(),
        redis_issued_before: redis.issued,
        postgres_issued: holders.len() as i64,
        fans_added: added,
        fans_removed: removed,
        fixes: added + removed + i64::from(counter_off),
    };
    metrics::coupon_reconciled("fan_added", added.unsigned_abs());
    metrics::coupon_reconciled("fan_removed", removed.unsigned_abs());
    metrics::coupon_reconciled("count", u64::from(counter_off));
    store::record_reconciliation(db, &report).await?;
    Ok(report)
}

/// The fans to add to Redis (holders it lacks) and to remove (members
/// without a coupon). Both inputs sorted.
fn differences(holders: &[String], members: &[String]) -> (Vec<String>, Vec<String>) {
    let (mut add, mut remove) = (Vec::new(), Vec::new());
    let (mut h, mut m) = (holders.iter().peekable(), members.iter().peekable());
    loop {
        match (h.peek(), m.peek()) {
            (Some(a), Some(b)) if a == b => {
                h.next();
                m.next();
            }
            (Some(a), Some(b)) if a < b => add.push(h.next().cloned().unwrap_or_default()),
            (Some(_), Some(_)) | (None, Some(_)) => {
                remove.push(m.next().cloned().unwrap_or_default());
            }
            (Some(_), None) => add.push(h.next().cloned().unwrap_or_default()),
            (None, None) => return (add, remove),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn the_repair_turns_the_members_into_the_holders(
            holders in proptest::collection::btree_set("[a-e]{1,2}", 0..20),
            members in proptest::collection::btree_set("[a-e]{1,2}", 0..20),
        ) {
            let h: Vec<String> = holders.iter().cloned().collect();
            let m: Vec<String> = members.iter().cloned().collect();
            let (add, remove) = differences(&h, &m);
            let mut after: BTreeSet<String> = members.clone();
            for fan in &add {
                prop_assert!(!members.contains(fan));
                after.insert(fan.clone());
            }
            for fan in &remove {
                prop_assert!(!holders.contains(fan));
                after.remove(fan);
            }
            prop_assert_eq!(after, holders);
        }
    }
}
