//! A JSON body compressed once, in every coding a client may accept, with
//! its entity tags.

use std::io::Write as _;

use bytes::Bytes;

/// Brotli quality for seat maps: 5 is where brotli's time per byte is
/// still close to gzip's default level while it compresses better; the
/// top levels (10–11) take seconds for a stadium's map. Source: the
/// quality/speed tables in the brotli README and Cloudflare's use of low
/// qualities for on-the-fly compression.
const BROTLI_QUALITY: u32 = 5;
/// Brotli window (log2 bytes): 22, the encoder's default, covers a whole
/// 50,000-seat map.
const BROTLI_WINDOW: u32 = 22;

/// A content coding of a response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// Brotli (`br`).
    Brotli,
    /// Gzip (`gzip`).
    Gzip,
    /// No compression.
    Identity,
}

impl Coding {
    /// The `Content-Encoding` value, if any.
    pub fn header(self) -> Option<&'static str> {
        match self {
            Self::Brotli => Some("br"),
            Self::Gzip => Some("gzip"),
            Self::Identity => None,
        }
    }

    /// The best coding `accept_encoding` (an `Accept-Encoding` header
    /// value) allows: `br`, then `gzip`, else identity. Codings with
    /// `q=0` are refused; `*` stands for any coding not named.
    pub fn negotiate(accept_encoding: Option<&str>) -> Self {
        let Some(header) = accept_encoding else {
            return Self::Identity;
        };
        let (mut br, mut gzip, mut any) = (None, None, None);
        for item in header.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q=").map(str::trim))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            match name.as_str() {
                "br" => br = Some(q),
                "gzip" | "x-gzip" => gzip = Some(q),
                "*" => any = Some(q),
                _ => {}
            }
        }
        let accepts = |named: Option<f32>| named.or(any).is_some_and(|q| q > 0.0);
        if accepts(br) {
            Self::Brotli
        } else if accepts(gzip) {
            Self::Gzip
        } else {
            Self::Identity
        }
    }
}

/// One JSON body in identity, gzip and brotli codings, and the strong
/// entity tag of each (`"<tag>"`, `"<tag>-gz"`, `"<tag>-br"`: a strong tag
/// names one representation, and each coding is one).
#[derive(Debug, Clone)]
pub struct Encoded {
    tag: String,
    identity: Bytes,
    gzip: Bytes,
    brotli: Bytes,
}

impl Encoded {
    /// Compresses `json` in both codings; `tag` is the version the entity
    /// tags are made from (hex digits or dashes only).
    pub fn new(tag: String, json: Vec<u8>) -> Self {
        let gzip = {
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(json.len() / 8),
                flate2::Compression::default(),
            );
            // Writing to a Vec cannot fail.
            let _ = encoder.write_all(&json);
            encoder.finish().unwrap_or_default()
        };
        let brotli = {
            let mut out = Vec::with_capacity(json.len() / 8);
            {
                let mut encoder = brotli::CompressorWriter::new(
                    &mut out,
                    64 * 1024,
                    BROTLI_QUALITY,
                    BROTLI_WINDOW,
                );
                let _ = encoder.write_all(&json);
            }
            out
        };
        Self {
            tag,
            identity: Bytes::from(json),
            gzip: Bytes::from(gzip),
            brotli: Bytes::from(brotli),
        }
    }

    /// The body in `coding`.
    pub fn body(&self, coding: Coding) -> Bytes {
        match coding {
            Coding::Brotli => self.brotli.clone(),
            Coding::Gzip => self.gzip.clone(),
            Coding::Identity => self.identity.clone(),
        }
    }

    /// The entity tag of the body in `coding`, quoted.
    pub fn etag(&self, coding: Coding) -> String {
        match coding {
            Coding::Brotli => format!("\"{}-br\"", self.tag),
            Coding::Gzip => format!("\"{}-gz\"", self.tag),
            Coding::Identity => format!("\"{}\"", self.tag),
        }
    }

    /// Whether `if_none_match` (an `If-None-Match` value) names a coding of
    /// this body, or is `*`: the client's copy is current. Uses the weak
    /// comparison RFC 9110 §13.1.2 prescribes for `If-None-Match`.
    pub fn matches(&self, if_none_match: &str) -> bool {
        if_none_match.trim() == "*"
            || if_none_match.split(',').any(|candidate| {
                let candidate = candidate.trim();
                let candidate = candidate.strip_prefix("W/").unwrap_or(candidate);
                [Coding::Identity, Coding::Gzip, Coding::Brotli]
                    .iter()
                    .any(|c| self.etag(*c) == candidate)
            })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    #[test]
    fn negotiation_prefers_brotli_then_gzip_and_honours_q_zero() {
        assert_eq!(Coding::negotiate(Some("gzip, deflate, br")), Coding::Brotli);
        assert_eq!(Coding::negotiate(Some("gzip, br;q=0")), Coding::Gzip);
        assert_eq!(Coding::negotiate(Some("deflate")), Coding::Identity);
        assert_eq!(Coding::negotiate(Some("*")), Coding::Brotli);
        assert_eq!(Coding::negotiate(Some("*;q=0")), Coding::Identity);
        assert_eq!(Coding::negotiate(Some("identity")), Coding::Identity);
        assert_eq!(Coding::negotiate(None), Coding::Identity);
    }

    #[test]
    fn every_coding_decodes_to_the_same_json() {
        let json: Vec<u8> = (0..2_000)
            .map(|i| format!("{{\"id\":{i},\"available\":true}},"))
            .collect::<String>()
            .into_bytes();
        let encoded = Encoded::new("abc".into(), json.clone());
        let mut gunzipped = Vec::new();
        flate2::read::GzDecoder::new(&encoded.body(Coding::Gzip)[..])
            .read_to_end(&mut gunzipped)
            .unwrap();
        let mut unbrotlied = Vec::new();
        brotli::Decompressor::new(&encoded.body(Coding::Brotli)[..], 4096)
            .read_to_end(&mut unbrotlied)
            .unwrap();
        assert_eq!(gunzipped, json);
        assert_eq!(unbrotlied, json);
        assert!(encoded.body(Coding::Brotli).len() < json.len() / 10);
    }

    #[test]
    fn if_none_match_accepts_any_coding_of_the_version_weak_or_strong() {
        let encoded = Encoded::new("v1".into(), b"{}".to_vec());
        assert!(encoded.matches("\"v1-br\""));
        assert!(encoded.matches("\"x\", W/\"v1\""));
        assert!(encoded.matches("*"));
        assert!(!encoded.matches("\"v2\""));
        assert!(!encoded.matches("v1"));
    }
}
