//! Access sessions: the revocation check behind `VerifyAccess` and the
//! release of a slot after a purchase, a leave or a revocation.

use super::{SessionCheck, Store, StoreError, reply};
use crate::domain::{EventId, ExitReason, UserId};

impl Store {
    /// Frees `user`'s active slot if it is session `session_id`. Returns
    /// true when a live slot was freed; false when the fan holds none, or
    /// holds one of another session (which is left alone).
    ///
    /// # Errors
    /// [`StoreError`] when Redis fails.
    pub(crate) async fn release(
        &self,
        event: &EventId,
        user: &UserId,
        session_id: &str,
        reason: ExitReason,
    ) -> Result<bool, StoreError> {
        let reply = self
            .run(
                "release",
                &self.scripts().release,
                event,
                &[user.as_str(), reason.as_str(), session_id],
            )
            .await?;
        reply::released(&reply)
    }

    /// Whether each session `(user, sid, accept_completed)` of `event` still
    /// holds an active slot, in one script. With `accept_completed`, a
    /// session released because its purchase completed answers
    /// [`SessionCheck::Completed`] instead of `Released`. One answer per
    /// session, in order.
    ///
    /// # Errors
    /// [`StoreError`] when Redis fails or answers out of shape.
    pub(crate) async fn verify_many(
        &self,
        event: &EventId,
        sessions: &[(&UserId, &str, bool)],
    ) -> Result<Vec<SessionCheck>, StoreError> {
        let args: Vec<&str> = sessions
            .iter()
            .flat_map(|(user, sid, accept_completed)| {
                [
                    user.as_str(),
                    sid,
                    if *accept_completed { "1" } else { "0" },
                ]
            })
            .collect();
        let reply = self
            .run("verify", &self.scripts().verify, event, &args)
            .await?;
        reply::session_checks(&reply, sessions.len())
    }
}
