//! Base64 forms of a token: found by the encoded `dt0` at each of the three
//! byte alignments, decoded, checked with the plain grammar, and re-encoded
//! after masking at the same length.
//!
//! Where a base64 run starts is not known (it may begin far before the
//! candidate), so the group boundaries are taken from the literal that
//! matched: each literal is the part of the encoding that depends on `dt0`
//! alone at one alignment, and so sits at a fixed offset inside its group.
//! A literal seen at the wrong alignment decodes to bytes that fail the
//! grammar.

use std::ops::Range;

use super::grammar::{self, Check, PlainToken};

/// Longest decoded stretch the check needs: the plain window plus the two
/// bytes that may precede the token in its first group.
const DECODED_MAX: usize = grammar::PLAIN_WINDOW + 2;
/// Base64 characters read from the group start to decode [`DECODED_MAX`]
/// bytes, plus one group to see where the run ends.
pub const WINDOW: usize = (DECODED_MAX / 3 + 2) * 4;

/// A literal of the encoded `dt0`, with its position in a base64 group.
#[derive(Debug, Clone)]
pub struct Literal {
    /// Encoded characters that depend only on `dt0`.
    pub text: String,
    /// Offset of the literal from the start of its group.
    pub offset_in_group: usize,
    /// Index of the token's first byte in the decoded group.
    pub token_offset: usize,
}

/// Returns the literals for every case variant of `dt0` at every alignment.
///
/// Each literal is four characters, because the SIMD prefilter checks four
/// bytes per candidate and rejects far more false candidates in ordinary
/// text than with three. Where `dt0` alone fixes only three characters, the
/// fourth comes from the type letter that always follows: its top bits are
/// those of an ASCII letter, and at one alignment its high nibble (4 to 7)
/// is listed as four variants.
pub fn literals() -> Vec<Literal> {
    let mut out: Vec<Literal> = Vec::new();
    for variant in [b"dt0", b"dT0", b"Dt0", b"DT0"] {
        for align in 0..3 {
            let (start, text) = determined_chars_with(variant, align, &[0x40, 0x7f]);
            let texts: Vec<String> = if text.len() >= 4 {
                vec![text[..4].to_string()]
            } else {
                // The next character is the letter's high nibble, 4 to 7.
                ["E", "F", "G", "H"]
                    .iter()
                    .map(|c| format!("{text}{c}"))
                    .collect()
            };
            for text in texts {
                if !out.iter().any(|l| l.text == text) {
                    out.push(Literal {
                        text,
                        offset_in_group: start % 4,
                        token_offset: align,
                    });
                }
            }
        }
    }
    out
}

/// Computes which characters of the encoding of `bytes`, placed after
/// `align` unknown bytes, are the same whatever the unknown bytes around
/// them are. Returns their start index and text.
pub fn determined_chars(bytes: &[u8], align: usize) -> (usize, String) {
    determined_chars_with(bytes, align, &[0x00, 0xff])
}

/// Like [`determined_chars`], with the bytes after `bytes` drawn from the
/// range between the two bounds in `after` (which must agree on the bits
/// that are fixed).
fn determined_chars_with(bytes: &[u8], align: usize, after: &[u8]) -> (usize, String) {
    let mut encodings = Vec::new();
    for fill in [0x00u8, 0xff] {
        for &next in after {
            let mut buf = vec![fill; align];
            buf.extend_from_slice(bytes);
            buf.push(next);
            buf.extend_from_slice(&[0x00, 0xff]);
            encodings.push(encode_std(&buf));
            buf.truncate(buf.len() - 2);
            buf.extend_from_slice(&[0xff, 0x00]);
            encodings.push(encode_std(&buf));
        }
    }
    let first = &encodings[0];
    let same = |i: usize| {
        encodings
            .iter()
            .all(|e| e.as_bytes()[i] == first.as_bytes()[i])
    };
    let n = encodings.iter().map(String::len).min().unwrap_or(0);
    let start = (0..n).find(|&i| same(i)).unwrap_or(n);
    let end = (start..n).find(|&i| !same(i)).unwrap_or(n);
    (start, first[start..end].to_string())
}

fn encode_std(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Maps a base64 character (either alphabet) to its value.
fn value(b: u8) -> Option<u8> {
    Some(match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'+' | b'-' => 62,
        b'/' | b'_' => 63,
        _ => return None,
    })
}

/// A token found inside base64.
#[derive(Debug, Clone)]
pub struct Base64Token {
    /// Haystack range of the base64 characters whose groups hold token
    /// bytes, padding included.
    pub span: Range<usize>,
    /// The decoded bytes of those groups.
    pub decoded: Vec<u8>,
    /// The token, with ranges into `decoded`.
    pub token: PlainToken,
    /// The run uses the URL-safe alphabet.
    pub url_safe: bool,
    /// The last group of the span ends in `=` padding.
    pub padded: bool,
}

/// Checks for a base64-encoded token whose literal `lit` was found at `p`.
pub fn check(hay: &[u8], p: usize, lit: &Literal, eof: bool) -> Check<Base64Token> {
    let Some(group_start) = p.checked_sub(lit.offset_in_group) else {
        return Check::NotFound;
    };
    let mut decoded: Vec<u8> = Vec::with_capacity(DECODED_MAX + 3);
    // Index of the next undecoded character.
    let mut i = group_start;
    let mut url_safe = false;
    let mut padded = false;
    'groups: while decoded.len() < DECODED_MAX {
        let mut quad = [0u8; 4];
        let mut n = 0;
        while n < 4 {
            match hay.get(i + n) {
                Some(&b) => match value(b) {
                    Some(v) => {
                        url_safe |= b == b'-' || b == b'_';
                        quad[n] = v;
                        n += 1;
                    }
                    None => break,
                },
                None if eof => break,
                // The haystack ends inside the run. Decide now if the
                // groups decoded so far already settle it.
                None => match grammar::check_plain(&decoded, lit.token_offset, false) {
                    Check::NotFound => return Check::NotFound,
                    Check::Found(_) => break 'groups,
                    Check::NeedMore => return Check::NeedMore,
                },
            }
        }
        let bytes = [
            quad[0] << 2 | quad[1] >> 4,
            quad[1] << 4 | quad[2] >> 2,
            quad[2] << 6 | quad[3],
        ];
        match n {
            4 => {
                decoded.extend_from_slice(&bytes);
                i += 4;
            }
            // A final group of two or three characters carries one or two
            // bytes, with or without `=` padding after it.
            2 | 3 => {
                decoded.extend_from_slice(&bytes[..n - 1]);
                i += n;
                let pad = 4 - n;
                let pads = hay.get(i..i + pad).unwrap_or(&[]);
                if pads.len() < pad && !eof && pads.iter().all(|&b| b == b'=') {
                    return Check::NeedMore;
                }
                if pads.len() == pad && pads.iter().all(|&b| b == b'=') {
                    padded = true;
                    i += pad;
                }
                break;
            }
            _ => break,
        }
    }
    if lit.token_offset >= decoded.len() {
        return Check::NotFound;
    }
    // The decoded run is complete, or long enough for any token, or
    // already decides the token, so the plain check sees it as ending here.
    let token = match grammar::check_plain(&decoded, lit.token_offset, true) {
        Check::Found(t) => t,
        _ => return Check::NotFound,
    };
    // Groups that hold token bytes, from the first group to the group of
    // the last masked byte.
    let last_group = (token.span.end - 1) / 3;
    let group_bytes_end = ((last_group + 1) * 3).min(decoded.len());
    let chars_end = if group_bytes_end == decoded.len() && decoded.len() % 3 != 0 {
        // The span ends in the final, short group.
        i
    } else {
        padded = false;
        group_start + (last_group + 1) * 4
    };
    decoded.truncate(group_bytes_end);
    Check::Found(Base64Token {
        span: group_start..chars_end,
        decoded,
        token,
        url_safe,
        padded,
    })
}

/// Re-encodes masked decoded bytes in the alphabet and padding of the
/// original span, so that the result has the span's length.
pub fn reencode(decoded: &[u8], url_safe: bool, padded: bool) -> Vec<u8> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    use base64::Engine as _;
    let engine = match (url_safe, padded) {
        (false, true) => &STANDARD,
        (false, false) => &STANDARD_NO_PAD,
        (true, true) => &URL_SAFE,
        (true, false) => &URL_SAFE_NO_PAD,
    };
    engine.encode(decoded).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_cover_each_alignment() {
        let lits = literals();
        for align in 0..3 {
            assert!(
                lits.iter().any(|l| l.token_offset == align),
                "alignment {align}"
            );
        }
        // Four case variants at alignment 0, fewer at the others because
        // the case bit of a letter can fall outside the literal.
        assert_eq!(lits.iter().filter(|l| l.token_offset == 0).count(), 4);
        assert!(lits.iter().all(|l| l.text.len() == 4), "{lits:?}");
    }

    #[test]
    fn determined_chars_of_aligned_prefix() {
        assert_eq!(determined_chars(b"dt0", 0), (0, "ZHQw".to_string()));
    }
}
