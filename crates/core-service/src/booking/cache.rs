//! The sale-rules cache of the booking layer (performances are never
//! edited, so entries do not expire). Seat maps live in
//! [`crate::seatmap`].

use std::{
    collections::HashMap,
    sync::{PoisonError, RwLock},
};

use crate::{domain::PerformanceId, store::catalog::SaleRules};

/// Sale rules by performance. Performances are never edited, so entries do
/// not expire.
#[derive(Debug, Default)]
pub(super) struct RulesCache {
    entries: RwLock<HashMap<i64, SaleRules>>,
}

impl RulesCache {
    pub(super) fn get(&self, id: PerformanceId) -> Option<SaleRules> {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id.get())
            .copied()
    }

    pub(super) fn put(&self, id: PerformanceId, rules: SaleRules) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.len() > 100_000 {
            entries.clear();
        }
        entries.insert(id.get(), rules);
    }
}
