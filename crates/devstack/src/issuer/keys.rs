//! The issuer's signing keys on disk: RSA-2048 private keys for RS256 as
//! PKCS#8 PEM files `rs256-<n>.pem` in the issuer's folder. The highest `n`
//! signs; the newest [`PUBLISHED_KEYS`] are published, so tokens signed
//! before a rotation keep verifying. Files of other names (the ES256
//! `signing-<n>.pem` keys of earlier versions) are ignored.

use std::{
    fs,
    io::{ErrorKind, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use aws_lc_rs::{
    encoding::AsDer,
    rsa::{KeyPair, KeySize},
};
use jsonwebtoken::{
    EncodingKey,
    jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash},
};

use super::ALGORITHM;

/// How many of the newest keys the JWK Set holds.
pub const PUBLISHED_KEYS: usize = 3;

const PREFIX: &str = "rs256-";
const SUFFIX: &str = ".pem";

/// One signing key and its public JWK.
pub(super) struct SigningKey {
    pub(super) kid: String,
    pub(super) encoding: EncodingKey,
    jwk: Jwk,
}

/// The keys found in a folder, oldest first; never empty.
pub(super) struct KeyRing {
    keys: Vec<SigningKey>,
    /// The `n` of the newest file.
    newest: u64,
}

impl KeyRing {
    /// Loads the keys in `dir`, creating the folder and a first key when
    /// there is none.
    pub(super) fn load_or_create(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        if key_files(dir)?.is_empty() {
            create(dir, 1)?;
        }
        Self::load(dir)
    }

    fn load(dir: &Path) -> Result<Self> {
        let files = key_files(dir)?;
        let Some(&(newest, _)) = files.last() else {
            bail!("no signing key in {}", dir.display());
        };
        let keys = files
            .iter()
            .rev()
            .take(PUBLISHED_KEYS)
            .rev()
            .map(|(_, path)| read_key(path))
            .collect::<Result<_>>()?;
        Ok(Self { keys, newest })
    }

    /// Adds a key that signs from now on, drops files older than the
    /// published window, and reloads.
    pub(super) fn rotate(dir: &Path, current: &Self) -> Result<Self> {
        create(dir, current.newest + 1)?;
        let files = key_files(dir)?;
        let stale = files.len().saturating_sub(PUBLISHED_KEYS);
        for (_, path) in &files[..stale] {
            fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
        }
        Self::load(dir)
    }

    /// The key that signs new tokens.
    pub(super) fn signing(&self) -> &SigningKey {
        self.keys.last().expect("a key ring is never empty")
    }

    /// Every published public key, newest first.
    pub(super) fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: self.keys.iter().rev().map(|key| key.jwk.clone()).collect(),
        }
    }
}

/// The file of key `n` in `dir`: `rs256-<n>.pem`.
#[must_use]
pub fn key_file(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{n}{SUFFIX}"))
}

/// `(n, path)` of every `rs256-<n>.pem` in `dir`, by ascending `n`.
fn key_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let n = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| {
                name.strip_prefix(PREFIX)?
                    .strip_suffix(SUFFIX)?
                    .parse()
                    .ok()
            });
        if let Some(n) = n {
            files.push((n, path));
        }
    }
    files.sort_unstable();
    Ok(files)
}

fn read_key(path: &Path) -> Result<SigningKey> {
    let pem = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let encoding = EncodingKey::from_rsa_pem(&pem)
        .with_context(|| format!("{} is not an RSA private key", path.display()))?;
    let mut jwk = Jwk::from_encoding_key(&encoding, ALGORITHM)?;
    // RFC 7638: the kid is a hash of the public key itself, so it changes
    // exactly when the key does and needs no bookkeeping.
    let kid = jwk.thumbprint(ThumbprintHash::SHA256)?;
    jwk.common.key_id = Some(kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    Ok(SigningKey { kid, encoding, jwk })
}

/// Writes a fresh key as `rs256-<n>.pem`, readable by the owner only.
/// The file appears atomically (written aside, then hard-linked in), so a
/// process racing to create the same `n` either wins or finds a complete
/// file; losing the race is not an error.
fn create(dir: &Path, n: u64) -> Result<()> {
    let path = key_file(dir, n);
    let scratch = dir.join(format!(".{PREFIX}{n}.{}.tmp", std::process::id()));
    let pem = generate_pem()?;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&scratch)
        .with_context(|| format!("creating {}", scratch.display()))?;
    file.write_all(pem.as_bytes())?;
    file.sync_all()?;
    let linked = fs::hard_link(&scratch, &path);
    fs::remove_file(&scratch)?;
    match linked {
        Err(e) if e.kind() != ErrorKind::AlreadyExists => {
            Err(e).with_context(|| format!("creating {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// A new RSA-2048 private key as PKCS#8 PEM, from aws-lc's generator (the
/// library jsonwebtoken signs with). 2048 bits is what Amazon Cognito's
/// RS256 keys have, and an RSA signature checks in about a third of an
/// ES256 one's time (`openssl speed` on the project's machine: 13 µs
/// against 41 µs), which every first request of a fan pays.
fn generate_pem() -> Result<String> {
    let key = KeyPair::generate(KeySize::Rsa2048)
        .map_err(|_| anyhow::anyhow!("generating an RSA key failed"))?;
    let der = key
        .as_der()
        .map_err(|_| anyhow::anyhow!("encoding the RSA key failed"))?;
    Ok(pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref())))
}
