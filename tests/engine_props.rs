//! Property tests of the engine: random inputs with injected synthetic
//! tokens of every kind, cut into random chunks, against a slow reference
//! model of the rules (`tests/reference`).

mod reference;

use base64::Engine as _;
use proptest::prelude::*;

use dtredact::redact::FingerprintKey;
use dtredact::synth::{SynthToken, TokenGen, TokenKind};
use dtredact::{Policy, Redactor};

/// Bytes placed after a token so that nothing after it joins its run.
const DELIMITERS: [&[u8]; 7] = [b" ", b"\n", b"\r\n", b"\0", b"\"", b",", b"\xff"];

/// Filler without candidates: random bytes or printable text.
fn plain_filler() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..40),
        "[ -~\r\n\t]{0,40}".prop_map(String::into_bytes),
    ]
}

/// Filler that also contains pieces of candidates: prefixes, separators,
/// contexts and base64 text.
fn tricky_filler() -> impl Strategy<Value = Vec<u8>> {
    let fragments: Vec<&'static [u8]> = vec![
        b"dt0",
        b"DT0c01.",
        b"dt0s01.",
        b"%2E",
        b"%2e",
        b".",
        b"Api-Token ",
        b"api-token=",
        b"%20",
        b"%3D",
        b"ZHQw",
        b"RFQw",
        b"ABCDEFGH",
        b"abcdefghijklmnop",
        b"0123456789",
        b"+/",
        b"-_",
        b"=",
        b"\0",
        b"\r\n",
        b"\xc3\x28",
        b"\xff",
    ];
    prop_oneof![
        plain_filler(),
        "[a-zA-Z0-9+/=._%-]{0,40}".prop_map(String::into_bytes),
        prop::collection::vec(prop::sample::select(fragments), 0..6).prop_map(|v| v.concat()),
    ]
}

/// One stretch of input: filler, then a token, then what follows it.
#[derive(Clone)]
struct Piece {
    filler: Vec<u8>,
    kind: TokenKind,
    /// Index into [`DELIMITERS`], or `None` for a token glued to what comes
    /// next.
    delimiter: Option<usize>,
}

impl std::fmt::Debug for Piece {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let filler = String::from_utf8_lossy(&self.filler);
        write!(
            f,
            "Piece({filler:?}, {:?}, {:?})",
            self.kind, self.delimiter
        )
    }
}

fn pieces(filler: BoxedStrategy<Vec<u8>>, glued: bool) -> impl Strategy<Value = Vec<Piece>> {
    let delimiter = if glued {
        prop::option::of(0..DELIMITERS.len()).boxed()
    } else {
        (0..DELIMITERS.len()).prop_map(Some).boxed()
    };
    let piece = (
        filler,
        prop::sample::select(TokenKind::ALL.to_vec()),
        delimiter,
    )
        .prop_map(|(filler, kind, delimiter)| {
            // A legacy token followed by a run byte is no longer a token.
            let delimiter = if kind == TokenKind::Legacy {
                delimiter.or(Some(0))
            } else {
                delimiter
            };
            Piece {
                filler,
                kind,
                delimiter,
            }
        });
    prop::collection::vec(piece, 0..6)
}

/// An input built from pieces, with the tokens in it and the output that
/// `keep-id` must give when nothing but the tokens is masked.
struct Built {
    input: Vec<u8>,
    expected: Vec<u8>,
    tokens: Vec<SynthToken>,
}

fn build(pieces: &[Piece], tail: &[u8], seed: u64) -> Built {
    let mut gen = TokenGen::new(seed);
    let mut built = Built {
        input: Vec::new(),
        expected: Vec::new(),
        tokens: Vec::new(),
    };
    for piece in pieces {
        let token = gen.token(piece.kind);
        built.input.extend_from_slice(&piece.filler);
        built.expected.extend_from_slice(&piece.filler);
        built.input.extend_from_slice(token.text.as_bytes());
        built.expected.extend_from_slice(token.masked.as_bytes());
        if let Some(d) = piece.delimiter {
            built.input.extend_from_slice(DELIMITERS[d]);
            built.expected.extend_from_slice(DELIMITERS[d]);
        }
        built.tokens.push(token);
    }
    built.input.extend_from_slice(tail);
    built.expected.extend_from_slice(tail);
    built
}

/// Cuts `input` into chunks of the given sizes, repeated, and redacts it
/// through one stream.
fn redact_streamed(r: &Redactor, input: &[u8], sizes: &[usize]) -> Vec<u8> {
    redact_streamed_idle(r, input, sizes, false)
}

/// Like [`redact_streamed`], and with `idle` set, flushes the stream as idle
/// after every chunk.
fn redact_streamed_idle(r: &Redactor, input: &[u8], sizes: &[usize], idle: bool) -> Vec<u8> {
    let mut stream = r.stream_with_capacity(sizes.iter().copied().max().unwrap_or(1));
    let mut out = Vec::new();
    let mut rest = input;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let n = size.min(rest.len());
        stream.push(&rest[..n], &mut out);
        if idle {
            stream.flush_idle_into(&mut out);
        }
        rest = &rest[n..];
    }
    stream.finish(&mut out);
    out
}

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        1 => Just(vec![1]),
        3 => prop::collection::vec(1usize..400, 1..20),
    ]
}

fn policies() -> Vec<Policy> {
    vec![
        Policy::KeepId,
        Policy::Full,
        Policy::Placeholder,
        Policy::Fingerprint(FingerprintKey::new(b"property-test-key")),
    ]
}

/// Returns the secret characters of a token: the part after the last
/// separator, or the 21 legacy characters. Base64 kinds are decoded first.
fn secret_of(t: &SynthToken) -> Vec<u8> {
    let plain = match t.kind {
        TokenKind::Base64 => base64::engine::general_purpose::STANDARD
            .decode(&t.text)
            .unwrap(),
        TokenKind::Base64Url => {
            let body = t.text.strip_prefix("Basic ").unwrap();
            base64::engine::general_purpose::URL_SAFE
                .decode(body)
                .unwrap()
        }
        _ => t.text.as_bytes().to_vec(),
    };
    let cut = plain
        .iter()
        .rposition(|&b| b == b'.' || b == b' ')
        .max(
            plain
                .windows(3)
                .rposition(|w| w.eq_ignore_ascii_case(b"%2e"))
                .map(|i| i + 2),
        )
        .unwrap();
    plain[cut + 1..].to_vec()
}

/// Returns every base64 decoding of `out`: each run of base64 characters, decoded
/// from each of its first four positions, in both alphabets.
fn base64_decodings(out: &[u8]) -> Vec<Vec<u8>> {
    let is_b64 = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_');
    let mut decodings = Vec::new();
    let mut i = 0;
    while i < out.len() {
        if !is_b64(out[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < out.len() && is_b64(out[i]) {
            i += 1;
        }
        for shift in 0..4 {
            let run = &out[(start + shift).min(i)..i];
            let run: Vec<u8> = run[..run.len() / 4 * 4]
                .iter()
                .map(|&b| match b {
                    b'-' => b'+',
                    b'_' => b'/',
                    b => b,
                })
                .collect();
            if let Ok(d) = base64::engine::general_purpose::STANDARD_NO_PAD.decode(&run) {
                decodings.push(d);
            }
        }
    }
    decodings
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn streamed_equals_whole_and_reference(
        pieces in pieces(tricky_filler().boxed(), true),
        tail in tricky_filler(),
        seed in any::<u64>(),
        sizes in chunk_sizes(),
    ) {
        let built = build(&pieces, &tail, seed);
        let r = Redactor::default();
        let (whole, _) = r.redact_all(&built.input);
        let streamed = redact_streamed(&r, &built.input, &sizes);
        prop_assert!(streamed == whole, "streamed output differs from whole-input output");
        let expected = reference::redact(&built.input);
        prop_assert_eq!(
            String::from_utf8_lossy(&whole),
            String::from_utf8_lossy(&expected),
            "engine output differs from the reference"
        );
    }

    #[test]
    fn only_tokens_change(
        pieces in pieces(plain_filler().boxed(), false),
        tail in plain_filler(),
        seed in any::<u64>(),
        sizes in chunk_sizes(),
    ) {
        let built = build(&pieces, &tail, seed);
        let r = Redactor::default();
        let streamed = redact_streamed(&r, &built.input, &sizes);
        prop_assert_eq!(
            String::from_utf8_lossy(&streamed),
            String::from_utf8_lossy(&built.expected)
        );
        let (_, findings) = r.redact_all(&built.input);
        prop_assert_eq!(findings.len(), built.tokens.len());
    }

    #[test]
    fn no_secret_survives(
        pieces in pieces(tricky_filler().boxed(), true),
        seed in any::<u64>(),
        sizes in chunk_sizes(),
        policy in prop::sample::select(policies()),
        idle in any::<bool>(),
    ) {
        let built = build(&pieces, b"\n", seed);
        let r = Redactor::builder().policy(policy).build().unwrap();
        let out = redact_streamed_idle(&r, &built.input, &sizes, idle);
        let decodings = base64_decodings(&out);
        for t in &built.tokens {
            let secret = secret_of(t);
            prop_assert!(!contains(&out, &secret), "{:?} secret survives", t.kind);
            for d in &decodings {
                prop_assert!(!contains(d, &secret), "{:?} secret survives in base64", t.kind);
            }
        }
    }

    #[test]
    fn redacting_twice_changes_nothing(
        pieces in pieces(tricky_filler().boxed(), true),
        tail in tricky_filler(),
        seed in any::<u64>(),
        sizes in chunk_sizes(),
    ) {
        // A space before each token: under `full` and `placeholder`, a
        // legacy-shaped run that went on into a token prefix ends at the
        // mask, and a second pass finds a legacy token there.
        let pieces: Vec<Piece> = pieces
            .into_iter()
            .map(|mut p| {
                p.filler.push(b' ');
                p
            })
            .collect();
        let built = build(&pieces, &tail, seed);
        for policy in policies() {
            let r = Redactor::builder().policy(policy.clone()).build().unwrap();
            let (once, _) = r.redact_all(&built.input);
            let twice = redact_streamed(&r, &once, &sizes);
            prop_assert!(twice == once, "{}: second pass changed the output", policy.name());
        }
    }
}
