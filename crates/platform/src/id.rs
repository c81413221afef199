//! Identifiers shared by both services.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, de};

/// Why a [`UserId`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UserIdError {
    /// Empty or longer than [`UserId::MAX_BYTES`].
    #[error("user id must be 1-64 bytes")]
    Length,
    /// Contains whitespace or a control character.
    #[error("user id must not contain whitespace or control characters")]
    Character,
}

/// A fan's id: 1–64 bytes of UTF-8 with no whitespace or control
/// characters. The same id travels inside the waiting room's access tokens
/// and keys the booking core's balances, so both services parse it here.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    /// Longest accepted id, in bytes.
    pub const MAX_BYTES: usize = 64;

    /// Parses an id.
    ///
    /// # Errors
    /// [`UserIdError`] when empty, longer than 64 bytes, or containing
    /// whitespace or control characters.
    pub fn parse(raw: &str) -> Result<Self, UserIdError> {
        if raw.is_empty() || raw.len() > Self::MAX_BYTES {
            return Err(UserIdError::Length);
        }
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(UserIdError::Character);
        }
        Ok(Self(raw.to_owned()))
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for UserId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn ids_without_whitespace_of_1_to_64_bytes_parse_and_round_trip(raw in "[A-Za-z0-9_@.:-]{1,64}") {
            let id = UserId::parse(&raw).unwrap();
            prop_assert_eq!(id.as_str(), raw.as_str());
            let json = serde_json::to_string(&id).unwrap();
            prop_assert_eq!(serde_json::from_str::<UserId>(&json).unwrap(), id);
        }

        #[test]
        fn ids_with_whitespace_are_refused(a in "[a-z]{0,10}", ws in "[ \t\n\r]", b in "[a-z]{0,10}") {
            prop_assert_eq!(UserId::parse(&format!("{a}{ws}{b}")), Err(UserIdError::Character));
        }
    }

    #[test]
    fn empty_and_overlong_ids_are_refused() {
        assert_eq!(UserId::parse(""), Err(UserIdError::Length));
        assert_eq!(UserId::parse(&"a".repeat(65)), Err(UserIdError::Length));
        assert!(UserId::parse(&"a".repeat(64)).is_ok());
        assert!(serde_json::from_str::<UserId>("\"a b\"").is_err());
    }
}
