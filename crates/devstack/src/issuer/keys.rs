//! The issuer's signing keys on disk: ES256 (P-256) private keys as PKCS#8
//! PEM files `signing-<n>.pem` in the issuer's folder. The highest `n`
//! signs; the newest [`PUBLISHED_KEYS`] are published, so tokens signed
//! before a rotation keep verifying.

use std::{
    fs,
    io::{ErrorKind, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use jsonwebtoken::{
    Algorithm, EncodingKey,
    jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash},
};
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use rand::{TryRngCore, rngs::OsRng};

/// How many of the newest keys the JWK Set holds.
pub const PUBLISHED_KEYS: usize = 3;

const PREFIX: &str = "signing-";
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

/// `(n, path)` of every `signing-<n>.pem` in `dir`, by ascending `n`.
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
    let encoding = EncodingKey::from_ec_pem(&pem)
        .with_context(|| format!("{} is not a PKCS#8 P-256 key", path.display()))?;
    let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256)?;
    // RFC 7638: the kid is a hash of the public key itself, so it changes
    // exactly when the key does and needs no bookkeeping.
    let kid = jwk.thumbprint(ThumbprintHash::SHA256)?;
    jwk.common.key_id = Some(kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    Ok(SigningKey { kid, encoding, jwk })
}

/// Writes a fresh key as `signing-<n>.pem`, readable by the owner only.
/// The file appears atomically (written aside, then hard-linked in), so a
/// process racing to create the same `n` either wins or finds a complete
/// file; losing the race is not an error.
fn create(dir: &Path, n: u64) -> Result<()> {
    let path = dir.join(format!("{PREFIX}{n}{SUFFIX}"));
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

/// A new P-256 private key as PKCS#8 PEM. The scalar comes straight from
/// the OS generator; `p256` rejects the (vanishingly rare) values outside
/// the curve order, which are simply drawn again.
fn generate_pem() -> Result<String> {
    loop {
        let mut bytes = [0u8; 32];
        OsRng
            .try_fill_bytes(&mut bytes)
            .context("reading the OS random generator")?;
        if let Ok(secret) = p256::SecretKey::from_slice(&bytes) {
            return Ok(secret.to_pkcs8_pem(LineEnding::LF)?.to_string());
        }
    }
}
