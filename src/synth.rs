//! Synthetic Dynatrace-shaped tokens for tests, benchmarks and the corpus
//! generator.
//!
//! Every token made here is random and valid only in shape: it follows the
//! grammar the detector matches, so tests never carry a real credential.
//! Each [`SynthToken`] carries the text to inject and the text the default
//! `keep-id` policy must produce for it, computed here without the engine, so
//! that tests compare the engine against an independent expectation.

use base64::Engine as _;

/// Token shapes the generator can produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// `dt0c01.<24>.<64>`: a classic API token.
    Classic,
    /// `dt0s16.<8>.<64>`: a platform token.
    Platform,
    /// `dt0s02.<8>.<64>`: an OAuth client secret.
    OAuthSecret,
    /// `dt0s01.<24>.<64>`: a SCIM token, masked whole under `keep-id`.
    Scim,
    /// `dt0a01.<8>.<64 lower-case hex>`: a serverless agent connection token.
    Agent,
    /// A classic token in lower case, as a log normaliser would leave it.
    LowerCase,
    /// A classic token with `%2E` separators.
    PercentSeparators,
    /// A classic token with a secret cut to 16..=63 characters.
    ShortSecret,
    /// A classic token whose secret runs to 65..=128 characters.
    LongSecret,
    /// `Api-Token <21 chars>`: a legacy token after its context.
    Legacy,
    /// A classic token, standard base64, inside a longer base64 value.
    Base64,
    /// A platform token inside `Basic base64(user:token)`, URL-safe alphabet.
    Base64Url,
}

impl TokenKind {
    /// Every kind, in declaration order.
    pub const ALL: [TokenKind; 12] = [
        TokenKind::Classic,
        TokenKind::Platform,
        TokenKind::OAuthSecret,
        TokenKind::Scim,
        TokenKind::Agent,
        TokenKind::LowerCase,
        TokenKind::PercentSeparators,
        TokenKind::ShortSecret,
        TokenKind::LongSecret,
        TokenKind::Legacy,
        TokenKind::Base64,
        TokenKind::Base64Url,
    ];

    /// Rule name that a finding for this kind carries.
    pub fn rule(self) -> &'static str {
        match self {
            TokenKind::ShortSecret | TokenKind::LongSecret => crate::detect::RULE_PARTIAL,
            TokenKind::Legacy => crate::detect::RULE_LEGACY,
            _ => crate::detect::RULE_TOKEN,
        }
    }
}

/// One generated token: what to inject and what `keep-id` turns it into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthToken {
    /// Shape of the token.
    pub kind: TokenKind,
    /// Bytes to place in the input.
    pub text: String,
    /// Bytes the `keep-id` policy must write in place of `text`.
    pub masked: String,
    /// The token identifier a finding reports, if any.
    pub id: Option<String>,
}

/// A seeded generator of synthetic tokens (SplitMix64, so that the same
/// seed gives the same corpus on every platform and version).
#[derive(Clone, Debug)]
pub struct TokenGen {
    state: u64,
}

const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const HEX: &[u8] = b"0123456789abcdef";

impl TokenGen {
    /// Creates a generator; equal seeds give equal sequences.
    pub fn new(seed: u64) -> TokenGen {
        TokenGen { state: seed }
    }

    /// Returns the next pseudo-random 64-bit value.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Returns a value in `0..n`; `n` must not be zero.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Returns `len` characters drawn from `alphabet`.
    pub fn string(&mut self, alphabet: &[u8], len: usize) -> String {
        (0..len)
            .map(|_| alphabet[self.below(alphabet.len() as u64) as usize] as char)
            .collect()
    }

    /// Returns a token of the given kind.
    pub fn token(&mut self, kind: TokenKind) -> SynthToken {
        match kind {
            TokenKind::Classic => self.dotted(kind, "dt0c01", 24, 64, UPPER_ALNUM),
            TokenKind::Platform => self.dotted(kind, "dt0s16", 8, 64, UPPER_ALNUM),
            TokenKind::OAuthSecret => self.dotted(kind, "dt0s02", 8, 64, UPPER_ALNUM),
            TokenKind::Agent => self.dotted(kind, "dt0a01", 8, 64, HEX),
            TokenKind::Scim => {
                let public = self.string(UPPER_ALNUM, 24);
                let secret = self.string(UPPER_ALNUM, 64);
                SynthToken {
                    kind,
                    text: format!("dt0s01.{public}.{secret}"),
                    masked: format!("dt0s01.{}.{}", "*".repeat(24), "*".repeat(64)),
                    id: None,
                }
            }
            TokenKind::LowerCase => {
                let mut t = self.dotted(kind, "dt0c01", 24, 64, UPPER_ALNUM);
                t.text = t.text.to_ascii_lowercase();
                t.masked = t.masked.to_ascii_lowercase();
                t.id = t.id.map(|id| id.to_ascii_lowercase());
                t
            }
            TokenKind::PercentSeparators => {
                let public = self.string(UPPER_ALNUM, 24);
                let secret = self.string(UPPER_ALNUM, 64);
                SynthToken {
                    kind,
                    text: format!("dt0c01%2E{public}%2e{secret}"),
                    masked: format!("dt0c01%2E{public}%2e{}", "*".repeat(64)),
                    id: Some(format!("dt0c01.{public}")),
                }
            }
            TokenKind::ShortSecret => {
                let len = 16 + self.below(48) as usize;
                self.dotted(kind, "dt0c01", 24, len, UPPER_ALNUM)
            }
            TokenKind::LongSecret => {
                let len = 65 + self.below(64) as usize;
                self.dotted(kind, "dt0c01", 24, len, UPPER_ALNUM)
            }
            TokenKind::Legacy => {
                let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
                let secret = self.string(alphabet, 21);
                SynthToken {
                    kind,
                    text: format!("Api-Token {secret}"),
                    masked: format!("Api-Token {}", "*".repeat(21)),
                    id: None,
                }
            }
            TokenKind::Base64 => {
                let inner = self.dotted(kind, "dt0c01", 24, 64, UPPER_ALNUM);
                let n = self.below(3) as usize;
                let lead = self.string(b"abcdefghijklmnopqrstuvwxyz", n);
                let plain = format!("{lead}{}", inner.text);
                let masked = format!("{lead}{}", inner.masked);
                let engine = base64::engine::general_purpose::STANDARD;
                SynthToken {
                    kind,
                    text: engine.encode(plain),
                    masked: engine.encode(masked),
                    id: inner.id,
                }
            }
            TokenKind::Base64Url => {
                let inner = self.dotted(kind, "dt0s16", 8, 64, UPPER_ALNUM);
                let n = 1 + self.below(6) as usize;
                let user = self.string(b"abcdefghijklmnopqrstuvwxyz", n);
                let engine = base64::engine::general_purpose::URL_SAFE;
                SynthToken {
                    kind,
                    text: format!("Basic {}", engine.encode(format!("{user}:{}", inner.text))),
                    masked: format!(
                        "Basic {}",
                        engine.encode(format!("{user}:{}", inner.masked))
                    ),
                    id: inner.id,
                }
            }
        }
    }

    fn dotted(
        &mut self,
        kind: TokenKind,
        prefix: &str,
        public_len: usize,
        secret_len: usize,
        alphabet: &[u8],
    ) -> SynthToken {
        let public = self.string(UPPER_ALNUM, public_len);
        let secret = self.string(alphabet, secret_len);
        let masked_len = secret_len.min(128);
        SynthToken {
            kind,
            text: format!("{prefix}.{public}.{secret}"),
            masked: format!(
                "{prefix}.{public}.{}{}",
                "*".repeat(masked_len),
                &secret[masked_len..]
            ),
            id: Some(format!("{prefix}.{public}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_tokens() {
        let mut a = TokenGen::new(7);
        let mut b = TokenGen::new(7);
        for kind in TokenKind::ALL {
            assert_eq!(a.token(kind), b.token(kind));
        }
    }

    #[test]
    fn masked_keeps_length() {
        let mut g = TokenGen::new(1);
        for kind in TokenKind::ALL {
            let t = g.token(kind);
            assert_eq!(t.text.len(), t.masked.len(), "{kind:?}");
            assert_ne!(t.text, t.masked, "{kind:?}");
        }
    }
}
