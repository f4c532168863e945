//! Masking policies: what replaces a secret.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::detect::{base64, Encoding, Hit, HitBody, PlainToken, Rules};

/// Byte that replaces each masked byte.
pub const MASK: u8 = b'*';

/// Replacement of a found secret.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Policy {
    /// Mask the secret part, keep the token identifier. Length is kept.
    KeepId,
    /// Mask every byte of the token. Length is kept.
    Full,
    /// Replace the whole token with `[REDACTED:<rule>]`. Length changes.
    Placeholder,
    /// Replace the secret part, at the same length, with `fp:` and hex
    /// digits of a keyed HMAC-SHA-256 of the token, so that one token always
    /// gets the same mask.
    Fingerprint(FingerprintKey),
}

impl Policy {
    /// Returns whether output has the length of the input.
    pub fn keeps_length(&self) -> bool {
        !matches!(self, Policy::Placeholder)
    }

    /// Returns the policy's name in the config and on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Policy::KeepId => "keep-id",
            Policy::Full => "full",
            Policy::Placeholder => "placeholder",
            Policy::Fingerprint(_) => "fingerprint",
        }
    }

    /// Returns whether findings may carry the token identifier: only when the
    /// output shows it too.
    pub fn reveals_id(&self) -> bool {
        matches!(self, Policy::KeepId | Policy::Fingerprint(_))
    }
}

/// The HMAC key of the fingerprint policy. Its `Debug` output hides the
/// key.
#[derive(Clone, PartialEq, Eq)]
pub struct FingerprintKey(Arc<[u8]>);

impl FingerprintKey {
    /// Wraps a key. Any length works; 32 random bytes are a good choice.
    pub fn new(key: &[u8]) -> FingerprintKey {
        FingerprintKey(key.into())
    }

    /// Returns `fp:` and hex digits of HMAC-SHA-256 over `canonical`.
    fn digest_text(&self, canonical: &[u8]) -> Vec<u8> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(canonical);
        let digest = mac.finalize().into_bytes();
        let mut out = b"fp:".to_vec();
        for b in digest {
            out.extend_from_slice(format!("{b:02x}").as_bytes());
        }
        out
    }
}

impl std::fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FingerprintKey(<elided>)")
    }
}

/// Renders the bytes that replace `hit.span` in `hay`.
///
/// Under a length-keeping policy the result has the span's length. Bytes
/// it leaves visible equal the input, which lets the engine write only the
/// bytes that change.
pub(crate) fn render(policy: &Policy, rules: &Rules, hay: &[u8], hit: &Hit) -> Vec<u8> {
    if let Policy::Placeholder = policy {
        return format!("[REDACTED:{}]", rules.rule_names()[hit.rule]).into_bytes();
    }
    let span = &hay[hit.span.clone()];
    match &hit.body {
        HitBody::Token(token) => {
            let mut out = span.to_vec();
            mask_token(policy, &mut out, token, hit.span.start);
            out
        }
        HitBody::Base64(b) => {
            let mut decoded = b.decoded.clone();
            mask_token(policy, &mut decoded, &b.token, 0);
            let out = base64::reencode(&decoded, b.url_safe, b.padded);
            if out.len() == span.len() {
                out
            } else {
                // The span and its decoding disagree in length, which the
                // decoder never produces; mask it whole rather than leak.
                vec![MASK; span.len()]
            }
        }
        HitBody::Whole => {
            let mut out = span.to_vec();
            let whole = 0..span.len();
            fill(policy, &mut out, span, std::slice::from_ref(&whole));
            out
        }
        HitBody::Form(i) => {
            let form = rules.form(*i);
            match (policy, form.encoding) {
                (Policy::Fingerprint(_), Encoding::Plain | Encoding::Percent) => {
                    let mut out = span.to_vec();
                    let whole = 0..span.len();
                    fill(policy, &mut out, span, std::slice::from_ref(&whole));
                    out
                }
                _ => form.masked.clone(),
            }
        }
    }
}

/// Masks a token in `bytes`, whose index 0 is haystack position `origin`.
fn mask_token(policy: &Policy, bytes: &mut [u8], token: &PlainToken, origin: usize) {
    let rel = |r: &std::ops::Range<usize>| r.start - origin..r.end - origin;
    let span = rel(&token.span);
    let secret = rel(&token.secret);
    let public = rel(&token.public);
    let canonical = match policy {
        Policy::Fingerprint(_) => canonical_token(&bytes[span.clone()]),
        _ => Vec::new(),
    };
    // Two ranges at most, in an array: this runs once per token.
    let ranges: [std::ops::Range<usize>; 2] = match policy {
        Policy::Full => [span, 0..0],
        _ if token.scim => [public, secret],
        _ => [secret, 0..0],
    };
    fill(policy, bytes, &canonical, &ranges);
}

/// Fills `ranges` of `bytes` with mask bytes, or with the fingerprint text
/// of `canonical` under the fingerprint policy.
fn fill(policy: &Policy, bytes: &mut [u8], canonical: &[u8], ranges: &[std::ops::Range<usize>]) {
    let total: usize = ranges.iter().map(|r| r.len()).sum();
    let text = match policy {
        // Too short for `fp:` and a digit: plain masking.
        Policy::Fingerprint(key) if total >= 4 => key.digest_text(canonical),
        _ => Vec::new(),
    };
    // The fingerprint text first, then mask bytes.
    let mut text = text.as_slice();
    for r in ranges {
        let dst = &mut bytes[r.clone()];
        let n = text.len().min(dst.len());
        dst[..n].copy_from_slice(&text[..n]);
        dst[n..].fill(MASK);
        text = &text[n..];
    }
}

/// The form of a token that its fingerprint is computed over: upper case,
/// with `.` separators, so that a token gets the same fingerprint however a
/// log normaliser or URL encoder rewrote it.
fn canonical_token(token: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(token.len());
    let mut i = 0;
    while i < token.len() {
        if token[i] == b'%'
            && token.len() >= i + 3
            && token[i + 1] == b'2'
            && token[i + 2].eq_ignore_ascii_case(&b'e')
        {
            out.push(b'.');
            i += 3;
        } else {
            out.push(token[i].to_ascii_uppercase());
            i += 1;
        }
    }
    out
}

/// Returns the identifier that findings report for a hit, or `None` when
/// the hit has none or the policy hides it.
pub(crate) fn token_id(policy: &Policy, hay: &[u8], hit: &Hit) -> Option<String> {
    if !policy.reveals_id() {
        return None;
    }
    let (bytes, token): (&[u8], &PlainToken) = match &hit.body {
        HitBody::Token(t) => (hay, t),
        HitBody::Base64(b) => (&b.decoded, &b.token),
        HitBody::Whole | HitBody::Form(_) => return None,
    };
    if token.scim {
        return None;
    }
    let prefix = &bytes[token.span.start..token.span.start + 6];
    let public = &bytes[token.public.clone()];
    let mut id = String::with_capacity(7 + public.len());
    push_text(&mut id, prefix);
    id.push('.');
    push_text(&mut id, public);
    Some(id)
}

/// Appends `bytes` as text; the grammar admits only ASCII in a token, so
/// the lossy conversion is a fallback that never runs.
fn push_text(out: &mut String, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => out.push_str(text),
        Err(_) => out.push_str(&String::from_utf8_lossy(bytes)),
    }
}
