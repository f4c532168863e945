//! A slow, non-streaming model of the built-in rules under the `keep-id`
//! policy, written from the product rule without the engine's code: each
//! rule is a plain loop over every position of the whole input.
//!
//! Where two masks overlap, every byte that either masks is masked. The
//! model covers the cases the property tests generate, in which base64
//! tokens never share a base64 group with another token's mask.

/// Bytes of a secret part.
fn is_secret_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// Bytes of a public part.
fn is_public_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

/// Bytes of a legacy token.
fn is_legacy_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Returns the length of a separator (`.`, `%2E`, `%2e`) at `i`.
fn separator_len(s: &[u8], i: usize) -> Option<usize> {
    if s.get(i) == Some(&b'.') {
        return Some(1);
    }
    let three = s.get(i..i + 3)?;
    (three[0] == b'%' && three[1] == b'2' && three[2].eq_ignore_ascii_case(&b'e')).then_some(3)
}

/// Counts bytes of `s` from `i` on that satisfy `member`.
fn run_len(s: &[u8], i: usize, member: fn(u8) -> bool) -> usize {
    s[i.min(s.len())..]
        .iter()
        .take_while(|&&b| member(b))
        .count()
}

/// Returns the byte ranges `keep-id` masks for a token starting at `p`,
/// with the end of `s` as the end of the stream: the secret part, and the
/// public part of a SCIM token.
pub fn token_mask(s: &[u8], p: usize) -> Option<Vec<std::ops::Range<usize>>> {
    let head = s.get(p..p + 6)?;
    let prefix_ok = head[0].eq_ignore_ascii_case(&b'd')
        && head[1].eq_ignore_ascii_case(&b't')
        && head[2] == b'0'
        && head[3].is_ascii_alphabetic()
        && head[4].is_ascii_digit()
        && head[5].is_ascii_digit();
    if !prefix_ok {
        return None;
    }
    let scim = head[3].eq_ignore_ascii_case(&b's') && &head[4..6] == b"01";
    let public_start = p + 6 + separator_len(s, p + 6)?;
    let public_len = run_len(s, public_start, is_public_byte);
    if !(8..=128).contains(&public_len) {
        return None;
    }
    let secret_start = public_start + public_len + separator_len(s, public_start + public_len)?;
    let secret_len = run_len(s, secret_start, is_secret_byte);
    if secret_len < 16 {
        return None;
    }
    let secret = secret_start..secret_start + secret_len.min(128);
    let public = public_start..public_start + public_len;
    Some(if scim {
        vec![public, secret]
    } else {
        vec![secret]
    })
}

/// Returns the 21 masked positions of a legacy token after `Api-Token` at `p`.
pub fn legacy_mask(s: &[u8], p: usize) -> Option<std::ops::Range<usize>> {
    if !s.get(p..p + 9)?.eq_ignore_ascii_case(b"api-token") {
        return None;
    }
    let rest = &s[p + 9..];
    let sep = if rest.starts_with(b" ") || rest.starts_with(b"=") {
        1
    } else if rest.len() >= 3
        && rest[0] == b'%'
        && (rest[1..3].eq_ignore_ascii_case(b"20") || rest[1..3].eq_ignore_ascii_case(b"3d"))
    {
        3
    } else {
        return None;
    };
    let start = p + 9 + sep;
    let n = run_len(s, start, is_legacy_byte);
    (n == 21 && s.get(start + 21) != Some(&b'.')).then_some(start..start + 21)
}

fn base64_value(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    }
}

fn base64_char(v: u8, url_safe: bool) -> u8 {
    let alphabet: &[u8; 64] = if url_safe {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    alphabet[v as usize]
}

/// Decodes base64 characters four at a time. A final group of two or three
/// characters gives one or two bytes, and a single last character none.
fn decode(chars: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for group in chars.chunks(4) {
        let v: Vec<u32> = group
            .iter()
            .map(|&c| base64_value(c).unwrap() as u32)
            .collect();
        if v.len() < 2 {
            break;
        }
        let mut bits = 0u32;
        for (i, x) in v.iter().enumerate() {
            bits |= x << (18 - 6 * i);
        }
        let bytes = [(bits >> 16) as u8, (bits >> 8) as u8, bits as u8];
        out.extend_from_slice(&bytes[..v.len() - 1]);
    }
    out
}

/// Encodes the bytes of one group (one to three bytes) as two to four
/// characters.
fn encode_group(bytes: &[u8], url_safe: bool) -> Vec<u8> {
    let mut bits = 0u32;
    for (i, &b) in bytes.iter().enumerate() {
        bits |= (b as u32) << (16 - 8 * i);
    }
    (0..bytes.len() + 1)
        .map(|i| base64_char(((bits >> (18 - 6 * i)) & 63) as u8, url_safe))
        .collect()
}

/// Redacts `input` the way the engine must under `keep-id`.
pub fn redact(input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for p in 0..input.len() {
        let token = token_mask(input, p).unwrap_or_default();
        for range in token.into_iter().chain(legacy_mask(input, p)) {
            out[range].fill(b'*');
        }
    }

    // Base64: every run of base64 characters, decoded from each of its
    // first four characters, so that every group alignment is tried.
    let mut i = 0;
    while i < input.len() {
        if base64_value(input[i]).is_none() {
            i += 1;
            continue;
        }
        let run_start = i;
        while i < input.len() && base64_value(input[i]).is_some() {
            i += 1;
        }
        for shift in 0..4 {
            let start = run_start + shift;
            if start >= i {
                break;
            }
            redact_base64(input, start, i, &mut out);
        }
    }
    out
}

/// Masks tokens in the decoding of `input[start..end]` and writes the
/// re-encoded groups that hold masked bytes.
fn redact_base64(input: &[u8], start: usize, end: usize, out: &mut [u8]) {
    let chars = &input[start..end];
    let decoded = decode(chars);
    let mut masked = decoded.clone();
    for k in 0..decoded.len() {
        for range in token_mask(&decoded, k).unwrap_or_default() {
            masked[range].fill(b'*');
        }
    }
    if masked == decoded {
        return;
    }
    let url_safe = chars.iter().any(|&c| c == b'-' || c == b'_');
    for (g, group) in masked.chunks(3).enumerate() {
        let original = &decoded[g * 3..g * 3 + group.len()];
        if group == original {
            continue;
        }
        // Characters that re-encode to themselves keep whatever another
        // rule wrote there.
        let text = encode_group(group, url_safe);
        for (k, &c) in text.iter().enumerate() {
            let at = start + g * 4 + k;
            if c != input[at] {
                out[at] = c;
            }
        }
    }
}
