//! The Dynatrace token grammar, checked by hand at a candidate `dt0` or
//! `-tok` (of `Api-Token`) found by the literal prefilter.
//!
//! Every check takes the haystack, the candidate position and whether the
//! haystack ends where the stream ends. A check decides only when the bytes
//! it has fix the outcome for every possible continuation; otherwise it
//! returns [`Check::NeedMore`]. That is what makes streaming output
//! independent of how the input was cut into reads.

use std::ops::Range;

/// Shortest public part that makes a three-part string a token.
pub const PUBLIC_MIN: usize = 8;
/// Longest public part.
pub const PUBLIC_MAX: usize = 128;
/// Length of the secret part of a complete token.
pub const SECRET_LEN: usize = 64;
/// Shortest secret run that is masked as a partial secret.
pub const PARTIAL_MIN: usize = 16;
/// Longest run a partial secret masks; the rest of a longer run passes.
pub const PARTIAL_MAX: usize = 128;
/// Length of a legacy token.
pub const LEGACY_LEN: usize = 21;

/// Longest stretch of bytes a plain token check reads from its start:
/// prefix, two `%2E` separators, both parts at their maximum, and one byte
/// of lookahead.
pub const PLAIN_WINDOW: usize = 6 + 3 + PUBLIC_MAX + 3 + PARTIAL_MAX + 1;

/// Outcome of checking one candidate position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check<T> {
    /// The candidate is a match.
    Found(T),
    /// The candidate is not a match, whatever follows.
    NotFound,
    /// More bytes are needed to decide.
    NeedMore,
}

/// Whether a secret run is a complete token or a partial secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// Exactly 64 characters, followed by a non-alphanumeric byte or the end.
    Full,
    /// 16 to 63, or 65 and more characters.
    Partial,
}

/// A `dt0` token found in plain bytes. Ranges index the haystack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainToken {
    /// The whole match, from `dt0` to the last masked secret byte.
    pub span: Range<usize>,
    /// The public part (without separators).
    pub public: Range<usize>,
    /// The secret bytes to mask: the whole secret of a complete token, or
    /// up to [`PARTIAL_MAX`] bytes of a partial one.
    pub secret: Range<usize>,
    /// Complete token or partial secret.
    pub kind: SecretKind,
    /// The type is `dt0s01`, whose public part is masked too.
    pub scim: bool,
    /// A separator was written `%2E`.
    pub percent: bool,
}

/// Reads the byte at `i`, or reports that the haystack ended there.
/// `Err(true)` means "need more", `Err(false)` means "stream ended".
#[inline]
fn byte_at(hay: &[u8], i: usize, eof: bool) -> Result<u8, bool> {
    match hay.get(i) {
        Some(&b) => Ok(b),
        None => Err(!eof),
    }
}

/// Parses a separator (`.`, `%2E` or `%2e`) at `i` and returns its length.
fn separator(hay: &[u8], i: usize, eof: bool) -> Check<usize> {
    match byte_at(hay, i, eof) {
        Ok(b'.') => Check::Found(1),
        Ok(b'%') => {
            for (k, want) in [(1, b'2'), (2, b'e')] {
                match byte_at(hay, i + k, eof) {
                    Ok(b) if b.to_ascii_lowercase() == want => {}
                    Ok(_) | Err(false) => return Check::NotFound,
                    Err(true) => return Check::NeedMore,
                }
            }
            Check::Found(3)
        }
        Ok(_) | Err(false) => Check::NotFound,
        Err(true) => Check::NeedMore,
    }
}

/// A set of bytes that a run may consist of, as a bit of [`BYTE_SETS`].
#[derive(Debug, Clone, Copy)]
struct ByteSet(u8);

/// `[A-Za-z0-9]`: a secret part.
const ALNUM: ByteSet = ByteSet(1);
/// `[A-Za-z0-9-]`: a public part.
const PUBLIC: ByteSet = ByteSet(2);
/// `[A-Za-z0-9_-]`: a legacy token.
const LEGACY: ByteSet = ByteSet(4);

/// For each byte, the sets it belongs to. One lookup gives the byte's
/// membership of every set, and the AND of the entries of eight bytes
/// gives the sets that all eight belong to.
static BYTE_SETS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let mut sets = 0;
        if c.is_ascii_alphanumeric() {
            sets = ALNUM.0 | PUBLIC.0 | LEGACY.0;
        } else if c == b'-' {
            sets = PUBLIC.0 | LEGACY.0;
        } else if c == b'_' {
            sets = LEGACY.0;
        }
        table[b] = sets;
        b += 1;
    }
    table
};

impl ByteSet {
    fn contains(self, b: u8) -> bool {
        BYTE_SETS[b as usize] & self.0 != 0
    }

    /// Length of the run of members at the start of `bytes`.
    fn run(self, bytes: &[u8]) -> usize {
        let mut n = 0;
        let mut blocks = bytes.chunks_exact(8);
        for block in &mut blocks {
            let all = block
                .iter()
                .fold(0xff, |acc, &b| acc & BYTE_SETS[b as usize]);
            if all & self.0 == 0 {
                break;
            }
            n += 8;
        }
        n + bytes[n..]
            .iter()
            .position(|&b| !self.contains(b))
            .unwrap_or(bytes.len() - n)
    }
}

/// Counts the run of bytes of `set` from `start`, stopping at `cap` + 1
/// bytes. Returns `None` when the haystack ends inside the run before the
/// cap and the stream goes on.
fn run_len(hay: &[u8], start: usize, cap: usize, eof: bool, set: ByteSet) -> Option<usize> {
    let limit = hay.len().min(start.saturating_add(cap + 1));
    let tail = hay.get(start..limit).unwrap_or(&[]);
    let n = set.run(tail);
    if n == tail.len() && n <= cap && !eof {
        return None;
    }
    Some(n)
}

/// Checks for a token at `p`, where the prefilter found `dt0` in any case.
pub fn check_plain(hay: &[u8], p: usize, eof: bool) -> Check<PlainToken> {
    // `dt0`, one letter, two digits.
    for (k, ok) in [
        (0, (|b: u8| b.eq_ignore_ascii_case(&b'd')) as fn(u8) -> bool),
        (1, |b: u8| b.eq_ignore_ascii_case(&b't')),
        (2, |b: u8| b == b'0'),
        (3, |b: u8| b.is_ascii_alphabetic()),
        (4, |b: u8| b.is_ascii_digit()),
        (5, |b: u8| b.is_ascii_digit()),
    ] {
        match byte_at(hay, p + k, eof) {
            Ok(b) if ok(b) => {}
            Ok(_) | Err(false) => return Check::NotFound,
            Err(true) => return Check::NeedMore,
        }
    }
    let scim = hay[p + 3].eq_ignore_ascii_case(&b's') && &hay[p + 4..p + 6] == b"01";

    let sep1 = match separator(hay, p + 6, eof) {
        Check::Found(n) => n,
        Check::NotFound => return Check::NotFound,
        Check::NeedMore => return Check::NeedMore,
    };
    let public_start = p + 6 + sep1;
    let Some(public_len) = run_len(hay, public_start, PUBLIC_MAX, eof, PUBLIC) else {
        return Check::NeedMore;
    };
    if !(PUBLIC_MIN..=PUBLIC_MAX).contains(&public_len) {
        return Check::NotFound;
    }
    let public = public_start..public_start + public_len;

    let sep2 = match separator(hay, public.end, eof) {
        Check::Found(n) => n,
        Check::NotFound => return Check::NotFound,
        Check::NeedMore => return Check::NeedMore,
    };
    let secret_start = public.end + sep2;
    let Some(run) = run_len(hay, secret_start, PARTIAL_MAX, eof, ALNUM) else {
        return Check::NeedMore;
    };
    let kind = match run {
        SECRET_LEN => SecretKind::Full,
        n if n >= PARTIAL_MIN => SecretKind::Partial,
        _ => return Check::NotFound,
    };
    let masked = run.min(PARTIAL_MAX);
    let secret = secret_start..secret_start + masked;
    Check::Found(PlainToken {
        span: p..secret.end,
        public,
        secret,
        kind,
        scim,
        percent: sep1 > 1 || sep2 > 1,
    })
}

/// Bytes a legacy check reads before its candidate: the `Api` of
/// `Api-Token`.
pub const LEGACY_LOOKBEHIND: usize = 3;

/// Maximum bytes a legacy check reads from its candidate, the `-` of
/// `Api-Token`.
pub const LEGACY_WINDOW: usize = 6 + 3 + LEGACY_LEN + 1;

/// Checks for a legacy token after `Api-Token` whose `-` is at `dash`,
/// where the prefilter found `-tok` in any case. Returns the range of the
/// 21 masked bytes.
///
/// The prefilter looks for `-tok` rather than `api-`, because `-` is
/// rarer in text than the letters of `api`, which make the SIMD search
/// stop often for nothing.
pub fn check_legacy(hay: &[u8], dash: usize, eof: bool) -> Check<Range<usize>> {
    let Some(p) = dash.checked_sub(LEGACY_LOOKBEHIND) else {
        return Check::NotFound;
    };
    for (k, want) in b"api-token".iter().enumerate() {
        match byte_at(hay, p + k, eof) {
            Ok(b) if b.to_ascii_lowercase() == *want => {}
            Ok(_) | Err(false) => return Check::NotFound,
            Err(true) => return Check::NeedMore,
        }
    }
    let at = p + 9;
    let sep = match byte_at(hay, at, eof) {
        Ok(b' ' | b'=') => 1,
        Ok(b'%') => {
            let (b1, b2) = match (byte_at(hay, at + 1, eof), byte_at(hay, at + 2, eof)) {
                (Ok(b1), Ok(b2)) => (b1, b2),
                (Err(true), _) | (Ok(_), Err(true)) => return Check::NeedMore,
                _ => return Check::NotFound,
            };
            match (b1, b2.to_ascii_lowercase()) {
                (b'2', b'0') | (b'3', b'd') => 3,
                _ => return Check::NotFound,
            }
        }
        Ok(_) | Err(false) => return Check::NotFound,
        Err(true) => return Check::NeedMore,
    };
    let start = at + sep;
    let Some(run) = run_len(hay, start, LEGACY_LEN, eof, LEGACY) else {
        return Check::NeedMore;
    };
    if run != LEGACY_LEN {
        return Check::NotFound;
    }
    // The run stopped at a byte outside `[A-Za-z0-9_-]`; a `.` there also
    // disqualifies it (a host name or a longer dotted value).
    //
    // NOTE: a longer run that goes on into a `dt0` token is not a legacy
    // token, but the `full` and `placeholder` policies replace that token's
    // prefix, so a second pass over their output finds 21 characters
    // followed by a mask and masks them.
    match byte_at(hay, start + run, eof) {
        Ok(b'.') => Check::NotFound,
        Ok(_) | Err(false) => Check::Found(start..start + run),
        Err(true) => Check::NeedMore,
    }
}

/// Progress of an undecided token check, for masking on an idle flush.
///
/// Returns the position from which the available bytes may belong to a
/// secret, if the candidate at `p` is still viable: the start of the secret
/// part, or of the public part for `dt0s01`.
pub fn plain_secret_start(hay: &[u8], p: usize) -> Option<usize> {
    if check_plain(hay, p, false) != Check::NeedMore {
        return None;
    }
    let scim = hay
        .get(p + 3)
        .is_some_and(|b| b.eq_ignore_ascii_case(&b's'))
        && hay.get(p + 4..p + 6) == Some(b"01".as_slice());
    let Check::Found(sep1) = separator(hay, p + 6, true) else {
        return None;
    };
    let public_start = p + 6 + sep1;
    if scim {
        return Some(public_start);
    }
    let public_len = run_len(hay, public_start, PUBLIC_MAX, true, PUBLIC)?;
    match separator(hay, public_start + public_len, true) {
        Check::Found(sep2) => Some(public_start + public_len + sep2),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{ByteSet, ALNUM, LEGACY, PUBLIC};

    /// Tells whether `b` is in `set`, from the set's definition.
    fn reference(set: ByteSet, b: u8) -> bool {
        match set.0 {
            1 => b.is_ascii_alphanumeric(),
            2 => b.is_ascii_alphanumeric() || b == b'-',
            4 => b.is_ascii_alphanumeric() || b == b'-' || b == b'_',
            _ => unreachable!("unknown set"),
        }
    }

    #[test]
    fn byte_sets_match_their_definitions() {
        for set in [ALNUM, PUBLIC, LEGACY] {
            for b in 0..=255u8 {
                assert_eq!(set.contains(b), reference(set, b), "set {} byte {b}", set.0);
            }
        }
    }

    #[test]
    fn run_stops_at_each_outsider() {
        // A run of members with one outsider at each position, in runs
        // longer and shorter than the eight-byte blocks.
        for (set, alphabet) in [(ALNUM, &b"aZ9x"[..]), (PUBLIC, b"aZ9-"), (LEGACY, b"aZ9-_")] {
            for len in 0..40 {
                let members: Vec<u8> = (0..len).map(|i| alphabet[i % alphabet.len()]).collect();
                assert_eq!(set.run(&members), len, "set {} len {len}", set.0);
                for stop in 0..len {
                    for outsider in [b'.', b' ', 0x80, 0xff, b'_', b'-'] {
                        let mut bytes = members.clone();
                        bytes[stop] = outsider;
                        let want = bytes
                            .iter()
                            .position(|&b| !reference(set, b))
                            .unwrap_or(len);
                        assert_eq!(set.run(&bytes), want, "set {} len {len} stop {stop}", set.0);
                    }
                }
            }
        }
    }
}
