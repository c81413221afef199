//! The process-wide rustls crypto provider.
//!
//! redis, sqlx and tonic all build their TLS on rustls, and the workspace
//! gives rustls one provider, aws-lc-rs (the crypto library jsonwebtoken
//! already uses), so no second one is compiled in. rustls picks a provider
//! by itself only while exactly one is enabled; should a dependency ever
//! enable `ring` too, building a TLS config would panic. Installing ours
//! at start rules that out.

/// Installs aws-lc-rs as the process's default rustls provider, unless one
/// is installed already. Idempotent; call it before any TLS client or
/// server is built.
pub fn install_crypto_provider() {
    // Err means a provider is installed already, which is all we need.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
