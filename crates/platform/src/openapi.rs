//! OpenAPI pieces both services document the same way: the identity-token
//! and admin-key security schemes.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

/// Name of the identity scheme in `components.securitySchemes`.
pub const IDENTITY_SCHEME: &str = "identity";
/// Name of the admin-key scheme in `components.securitySchemes`.
pub const ADMIN_KEY_SCHEME: &str = "admin_key";

/// `Authorization: Bearer <identity token>`: the fan's OpenID Connect
/// identity token (see [`crate::identity`]).
#[must_use]
pub fn identity_scheme() -> SecurityScheme {
    SecurityScheme::Http(
        HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some(
                "The fan's OpenID Connect identity token from the platform's issuer \
                 (RS256 or ES256, audience `onsale` locally); its `sub` is the fan's user id.",
            ))
            .build(),
    )
}

/// `X-Admin-Key`: the operator key of the admin API (see
/// [`crate::auth::AdminKey`]).
#[must_use]
pub fn admin_key_scheme() -> SecurityScheme {
    SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
        "X-Admin-Key",
        "The operator key of the admin API.",
    )))
}

/// Adds both schemes to `openapi` under [`IDENTITY_SCHEME`] and
/// [`ADMIN_KEY_SCHEME`].
pub fn add_common_schemes(openapi: &mut utoipa::openapi::OpenApi) {
    let components = openapi.components.get_or_insert_with(Default::default);
    components.add_security_scheme(IDENTITY_SCHEME, identity_scheme());
    components.add_security_scheme(ADMIN_KEY_SCHEME, admin_key_scheme());
}
