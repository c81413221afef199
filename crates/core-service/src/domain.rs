//! Domain newtypes, parsed once at the edge so the rest of the crate never
//! re-checks them.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, de};
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{KnownFormat, ObjectBuilder, RefOr, Schema, SchemaFormat, Type},
};
use uuid::Uuid;

/// Why a value does not parse into a domain type. The message is safe to
/// show to clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// A fan's id (1–64 bytes, no whitespace or control characters): the
/// waiting room issues access tokens for the same id, so both services
/// parse it with [`platform::id`]. Its [`UserIdError`] becomes a
/// [`ParseError`] with the same message.
pub use platform::id::UserId;
use platform::id::UserIdError;

impl From<UserIdError> for ParseError {
    fn from(error: UserIdError) -> Self {
        Self(error.to_string())
    }
}

/// The OpenAPI schema of the newtypes that parse only positive `i64`s
/// (amounts and ids): an `int64` of at least 1, so that a generated request
/// the document calls valid is one the service takes.
fn positive_i64(description: &str, example: i64) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(1))
        .description(Some(description))
        .examples([example])
        .into()
}

/// An amount of Korean won. Whole won, never floats; arithmetic is
/// overflow-checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Krw(i64);

/// Documented as it is requested: positive (see [`Krw::positive`]).
impl PartialSchema for Krw {
    fn schema() -> RefOr<Schema> {
        positive_i64("An amount of Korean won: a positive whole number.", 110_000)
    }
}

impl ToSchema for Krw {}

impl Krw {
    /// Zero won.
    pub const ZERO: Self = Self(0);

    /// A strictly positive amount, as requested for charges and prices.
    ///
    /// # Errors
    /// [`ParseError`] for zero or negative amounts.
    pub fn positive(won: i64) -> Result<Self, ParseError> {
        if won > 0 {
            Ok(Self(won))
        } else {
            Err(ParseError("amount must be a positive number of KRW".into()))
        }
    }

    /// Any non-negative amount (a balance).
    ///
    /// # Errors
    /// [`ParseError`] for negative amounts.
    pub fn non_negative(won: i64) -> Result<Self, ParseError> {
        if won >= 0 {
            Ok(Self(won))
        } else {
            Err(ParseError("amount must not be negative".into()))
        }
    }

    /// The amount in won.
    pub fn won(self) -> i64 {
        self.0
    }

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(self, other: Self) -> Option<Self> {
        self.0.checked_add(other.0).map(Self)
    }

    /// `self - other`, or `None` when the result would be negative.
    pub fn checked_sub(self, other: Self) -> Option<Self> {
        self.0
            .checked_sub(other.0)
            .filter(|won| *won >= 0)
            .map(Self)
    }
}

impl fmt::Display for Krw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} KRW", self.0)
    }
}

impl<'de> Deserialize<'de> for Krw {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let won = i64::deserialize(deserializer)?;
        Self::positive(won).map_err(de::Error::custom)
    }
}

macro_rules! positive_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(i64);

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                positive_i64(concat!("A ", $what, ": a positive integer."), 1)
            }
        }

        impl ToSchema for $name {}

        impl $name {
            /// Parses a database id.
            ///
            /// # Errors
            /// [`ParseError`] for zero or negative ids.
            pub fn new(id: i64) -> Result<Self, ParseError> {
                if id > 0 { Ok(Self(id)) } else { Err(ParseError(concat!($what, " must be a positive integer").into())) }
            }

            /// The raw id.
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let id = i64::deserialize(deserializer)?;
                Self::new(id).map_err(de::Error::custom)
            }
        }
    };
}

positive_id!(
    /// A concert's id.
    ConcertId,
    "concert id"
);
positive_id!(
    /// A performance's id; also the waiting room's `event_id` (as decimal).
    PerformanceId,
    "performance id"
);
positive_id!(
    /// A seat's id.
    SeatId,
    "seat id"
);
positive_id!(
    /// A coupon campaign's id.
    CampaignId,
    "campaign id"
);

/// A coupon's code as a fan types or pastes it: 8–64 characters of `A`–`Z`,
/// `0`–`9` and `-`. Lower-case letters are taken as upper-case, so a code
/// read aloud or retyped still matches. Issued codes are 32 random
/// hexadecimal digits in upper case ([`CouponCode::generate`]), unguessable
/// (128 bits), so a fan cannot spend another fan's coupon by guessing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct CouponCode(String);

impl CouponCode {
    /// A new random code (a UUID v4's 122 random bits, as hexadecimal).
    pub fn generate() -> Self {
        Self(Uuid::new_v4().simple().to_string().to_ascii_uppercase())
    }

    /// Parses a code from a request.
    ///
    /// # Errors
    /// [`ParseError`] when shorter than 8 or longer than 64 characters, or
    /// with a character other than letters, digits and `-`.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        if !(8..=64).contains(&raw.len())
            || !raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(ParseError(
                "coupon_code must be 8-64 letters, digits or '-'".into(),
            ));
        }
        Ok(Self(raw.to_ascii_uppercase()))
    }

    /// The code as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PartialSchema for CouponCode {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(8))
            .max_length(Some(64))
            .pattern(Some("^[A-Za-z0-9-]{8,64}$"))
            .description(Some("A coupon code: 8-64 letters, digits or '-'"))
            .into()
    }
}

impl ToSchema for CouponCode {}

impl<'de> Deserialize<'de> for CouponCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(de::Error::custom)
    }
}

/// A reservation's id (UUID v7, time-ordered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct ReservationId(pub Uuid);

impl ReservationId {
    /// A fresh time-ordered id.
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }
}

impl fmt::Display for ReservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A payment's id (UUID v7, time-ordered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct PaymentId(pub Uuid);

impl PaymentId {
    /// A fresh time-ordered id.
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }
}

/// The client-chosen `Idempotency-Key` of a payment: 1–255 visible ASCII
/// characters, scoped per user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Longest accepted key, in bytes.
    pub const MAX_BYTES: usize = 255;

    /// Parses a header value.
    ///
    /// # Errors
    /// [`ParseError`] when empty, too long, or not visible ASCII.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        if raw.is_empty()
            || raw.len() > Self::MAX_BYTES
            || !raw.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(ParseError(
                "Idempotency-Key must be 1-255 visible ASCII characters".into(),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn only_positive_amounts_parse(won in any::<i64>()) {
            prop_assert_eq!(Krw::positive(won).is_ok(), won > 0);
            let parsed: Result<Krw, _> = serde_json::from_str(&won.to_string());
            prop_assert_eq!(parsed.is_ok(), won > 0);
        }

        #[test]
        fn checked_arithmetic_never_overflows_or_goes_negative(a in 0..=i64::MAX, b in 0..=i64::MAX) {
            let (a, b) = (Krw::non_negative(a).unwrap(), Krw::non_negative(b).unwrap());
            match a.checked_add(b) {
                Some(sum) => prop_assert_eq!(sum.won() as i128, a.won() as i128 + b.won() as i128),
                None => prop_assert!(a.won() as i128 + b.won() as i128 > i64::MAX as i128),
            }
            match a.checked_sub(b) {
                Some(diff) => prop_assert!(diff.won() >= 0 && diff.won() == a.won() - b.won()),
                None => prop_assert!(a.won() < b.won()),
            }
        }

        #[test]
        fn ids_are_positive(id in any::<i64>()) {
            prop_assert_eq!(SeatId::new(id).is_ok(), id > 0);
            prop_assert_eq!(PerformanceId::new(id).is_ok(), id > 0);
        }

        #[test]
        fn coupon_codes_are_letters_digits_and_dashes(raw in "\\PC{0,80}") {
            let valid = (8..=64).contains(&raw.len())
                && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            let parsed = CouponCode::parse(&raw);
            prop_assert_eq!(parsed.is_ok(), valid);
            if let Ok(code) = parsed {
                prop_assert_eq!(code.as_str(), raw.to_ascii_uppercase());
                prop_assert_eq!(CouponCode::parse(code.as_str()).unwrap(), code);
            }
        }

        #[test]
        fn generated_coupon_codes_parse(_n in 0..50_u8) {
            let code = CouponCode::generate();
            prop_assert_eq!(CouponCode::parse(code.as_str()).unwrap(), code);
        }

        #[test]
        fn idempotency_keys_are_visible_ascii(raw in "\\PC{0,300}") {
            let valid = !raw.is_empty() && raw.len() <= 255 && raw.bytes().all(|b| b.is_ascii_graphic());
            prop_assert_eq!(IdempotencyKey::parse(&raw).is_ok(), valid);
        }
    }

    #[test]
    fn user_id_errors_keep_their_messages() {
        let parse = |raw: &str| UserId::parse(raw).map_err(ParseError::from);
        assert_eq!(parse("").unwrap_err().0, "user id must be 1-64 bytes");
        assert_eq!(
            parse("a b").unwrap_err().0,
            "user id must not contain whitespace or control characters"
        );
    }

    #[test]
    fn amounts_beyond_i64_do_not_deserialize() {
        assert!(serde_json::from_str::<Krw>("9223372036854775808").is_err());
        assert!(serde_json::from_str::<Krw>("1.5").is_err());
        assert!(serde_json::from_str::<Krw>("\"100\"").is_err());
        assert_eq!(
            serde_json::from_str::<Krw>("9223372036854775807")
                .unwrap()
                .won(),
            i64::MAX
        );
    }
}
