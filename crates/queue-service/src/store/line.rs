//! The fan's side of the line: entering, polling (which records presence)
//! and leaving.

use redis::Script;

use super::{Lookup, Store, StoreError, reply};
use crate::domain::{EventId, UserId};

impl Store {
    /// Enters `user` into the line (idempotent).
    ///
    /// # Errors
    /// [`StoreError`] when Redis fails.
    pub(crate) async fn enter(&self, event: &EventId, user: &UserId) -> Result<Lookup, StoreError> {
        self.lookup("enter", &self.scripts().enter, event, user)
            .await
    }

    /// Looks `user` up and records the poll as presence.
    ///
    /// # Errors
    /// [`StoreError`] when Redis fails.
    pub(crate) async fn status(
        &self,
        event: &EventId,
        user: &UserId,
    ) -> Result<Lookup, StoreError> {
        self.lookup("status", &self.scripts().status, event, user)
            .await
    }

    /// Runs the entry or status script, which share their reply.
    async fn lookup(
        &self,
        name: &'static str,
        script: &Script,
        event: &EventId,
        user: &UserId,
    ) -> Result<Lookup, StoreError> {
        let reply = self.run(name, script, event, &[user.as_str()]).await?;
        reply::lookup(&reply)
    }

    /// Removes `user` from the line or the active set. Returns what the fan
    /// left: `Some(false)` the line, `Some(true)` an active slot, `None`
    /// nothing.
    ///
    /// # Errors
    /// [`StoreError`] when Redis fails.
    pub(crate) async fn leave(
        &self,
        event: &EventId,
        user: &UserId,
    ) -> Result<Option<bool>, StoreError> {
        let reply = self
            .run("leave", &self.scripts().leave, event, &[user.as_str()])
            .await?;
        reply::left(&reply)
    }
}
