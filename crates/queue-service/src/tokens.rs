//! Queue and access tokens: compact HS256 JWS via `jsonwebtoken`.
//!
//! Claims: `typ` (`queue` or `access`), `evt` (event id), `sub` (user id),
//! `sid` (session id: the fan's arrival number in this event), `iat` and
//! `exp` (seconds since the epoch). Checking a token is pure CPU; revocation
//! of access tokens is a separate one-script Redis check (see `store`).

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use platform::settings::{ExposeSecret, Secret};
use serde::{Deserialize, Serialize};

use crate::domain::{EventId, UserId};

/// Which door a token opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// Polls and leaves the line.
    Queue,
    /// Lets core-service sell seats to the fan.
    Access,
}

/// The JWT claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Queue or access token.
    pub typ: TokenKind,
    /// Event id.
    pub evt: String,
    /// User id.
    pub sub: String,
    /// Session id (arrival number).
    pub sid: String,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a well-formed JWS, bad signature, wrong algorithm or claims.
    #[error("token is malformed or its signature does not verify")]
    Invalid,
    /// `exp` has passed.
    #[error("token has expired")]
    Expired,
    /// Signed by us, but for a different event.
    #[error("token belongs to another event")]
    OtherEvent,
    /// A queue token where an access token is needed, or the reverse.
    #[error("wrong kind of token")]
    WrongKind,
}

/// A verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The fan.
    pub user: UserId,
    /// Session id.
    pub sid: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
}

/// Signs and verifies tokens with one HS256 key. Cloning is a reference
/// count: the service state, and with it this, is cloned for every
/// request, and the keys and validation rules are heap data.
#[derive(Clone)]
pub struct Tokens {
    keys: Arc<Keys>,
}

struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens { .. }")
    }
}

impl Tokens {
    /// Keys from the configured secret.
    pub fn new(secret: &Secret) -> Self {
        let bytes = secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is enforced to the second: an access token must not outlive
        // its admission.
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            keys: Arc::new(Keys {
                encoding: EncodingKey::from_secret(bytes),
                decoding: DecodingKey::from_secret(bytes),
                validation,
            }),
        }
    }

    /// Signs a token.
    ///
    /// # Errors
    /// `jsonwebtoken`'s error if signing fails (it does not for HS256 and
    /// these claims, but the library reports it).
    pub fn sign(
        &self,
        typ: TokenKind,
        event: &EventId,
        user: &UserId,
        sid: &str,
        exp: u64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let claims = Claims {
            typ,
            evt: event.as_str().to_owned(),
            sub: user.as_str().to_owned(),
            sid: sid.to_owned(),
            iat: jsonwebtoken::get_current_timestamp(),
            exp,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.keys.encoding)
    }

    /// Verifies signature, expiry, kind and event. No I/O.
    ///
    /// # Errors
    /// [`TokenError`] saying why the token is refused.
    pub fn verify(
        &self,
        token: &str,
        typ: TokenKind,
        event: &EventId,
    ) -> Result<Verified, TokenError> {
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.keys.decoding, &self.keys.validation)
                .map_err(|e| match e.kind() {
                    ErrorKind::ExpiredSignature => TokenError::Expired,
                    _ => TokenError::Invalid,
                })?;
        let claims = data.claims;
        // RFC 7519: valid only *before* `exp`. jsonwebtoken also accepts the
        // second of `exp` itself; refusing it keeps an access token from
        // outliving its slot, whose expiry `exp` rounds down.
        if jsonwebtoken::get_current_timestamp() >= claims.exp {
            return Err(TokenError::Expired);
        }
        if claims.typ != typ {
            return Err(TokenError::WrongKind);
        }
        if claims.evt != event.as_str() {
            return Err(TokenError::OtherEvent);
        }
        let user = UserId::parse(&claims.sub).map_err(|_| TokenError::Invalid)?;
        Ok(Verified {
            user,
            sid: claims.sid,
            exp: claims.exp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(secret: &str) -> Tokens {
        Tokens::new(&Secret::from(secret.to_owned()))
    }

    fn ids() -> (EventId, UserId) {
        (
            EventId::parse("perf-1").unwrap(),
            UserId::parse("fan-1").unwrap(),
        )
    }

    fn in_a_minute() -> u64 {
        jsonwebtoken::get_current_timestamp() + 60
    }

    #[test]
    fn a_signed_token_verifies_with_its_claims() {
        let t = tokens("0123456789abcdef0123456789abcdef");
        let (event, user) = ids();
        let exp = in_a_minute();
        let jwt = t.sign(TokenKind::Access, &event, &user, "42", exp).unwrap();
        let v = t.verify(&jwt, TokenKind::Access, &event).unwrap();
        assert_eq!(
            v,
            Verified {
                user,
                sid: "42".into(),
                exp
            }
        );
    }

    #[test]
    fn a_token_signed_with_another_key_is_invalid() {
        let (event, user) = ids();
        let forged = tokens("attacker-key-attacker-key-attacker-key")
            .sign(TokenKind::Access, &event, &user, "1", in_a_minute())
            .unwrap();
        let ours = tokens("0123456789abcdef0123456789abcdef");
        assert_eq!(
            ours.verify(&forged, TokenKind::Access, &event),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn a_tampered_payload_is_invalid() {
        let t = tokens("0123456789abcdef0123456789abcdef");
        let (event, user) = ids();
        let jwt = t
            .sign(TokenKind::Access, &event, &user, "1", in_a_minute())
            .unwrap();
        let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
        let other = t
            .sign(
                TokenKind::Access,
                &event,
                &UserId::parse("fan-2").unwrap(),
                "1",
                in_a_minute(),
            )
            .unwrap();
        parts[1] = other.split('.').nth(1).unwrap().to_owned();
        assert_eq!(
            t.verify(&parts.join("."), TokenKind::Access, &event),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            t.verify("not-a-jwt", TokenKind::Access, &event),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn kind_event_and_expiry_are_enforced() {
        let t = tokens("0123456789abcdef0123456789abcdef");
        let (event, user) = ids();
        let queue = t
            .sign(TokenKind::Queue, &event, &user, "1", in_a_minute())
            .unwrap();
        assert_eq!(
            t.verify(&queue, TokenKind::Access, &event),
            Err(TokenError::WrongKind)
        );
        let other = EventId::parse("perf-2").unwrap();
        assert_eq!(
            t.verify(&queue, TokenKind::Queue, &other),
            Err(TokenError::OtherEvent)
        );
        let old = t
            .sign(
                TokenKind::Queue,
                &event,
                &user,
                "1",
                jsonwebtoken::get_current_timestamp() - 5,
            )
            .unwrap();
        assert_eq!(
            t.verify(&old, TokenKind::Queue, &event),
            Err(TokenError::Expired)
        );
    }
}
