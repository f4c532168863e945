//! Unit tests of [`Stream`]: chunking, policies, idle flushes and findings.

use base64::Engine as _;

use super::{FingerprintKey, Policy, Redactor, Stream};
use crate::synth::{SynthToken, TokenGen, TokenKind};
use crate::{Encoding, Finding, RULE_LEGACY, RULE_PARTIAL, RULE_TOKEN};

fn stars(n: usize) -> String {
    "*".repeat(n)
}

fn all_policies() -> Vec<Policy> {
    vec![
        Policy::KeepId,
        Policy::Full,
        Policy::Placeholder,
        Policy::Fingerprint(FingerprintKey::new(b"unit-test-key")),
    ]
}

fn redactor(policy: Policy) -> Redactor {
    Redactor::builder().policy(policy).build().unwrap()
}

/// Builds a redactor with the built-in rules and one user rule of each kind.
fn redactor_with_user_rules(policy: Policy) -> Redactor {
    Redactor::builder()
        .policy(policy)
        .literal("literal", b"internal-hostname-7")
        .regex("ticket", "TCK-[0-9]{6}", None)
        .regex("session", "sess=[a-f0-9]+", Some(48))
        .known_secret("known", b"k/n+o w-n_secret")
        .build()
        .unwrap()
}

/// Feeds `input` in chunks of `size` bytes and returns output and findings.
fn redact_chunked(r: &Redactor, input: &[u8], size: usize) -> (Vec<u8>, Vec<Finding>) {
    let mut stream = r.stream_with_capacity(size);
    let mut out = Vec::new();
    for chunk in input.chunks(size) {
        stream.push(chunk, &mut out);
    }
    stream.finish(&mut out);
    (out, stream.take_findings())
}

fn sorted(mut findings: Vec<Finding>) -> Vec<Finding> {
    findings.sort_by(|a, b| (a.offset, &*a.rule).cmp(&(b.offset, &*b.rule)));
    findings
}

/// Text of every token kind between binary bytes, CRLF, NUL and an ANSI
/// colour code, with the tokens generated from `seed`.
fn mixed_input(seed: u64) -> (Vec<u8>, Vec<SynthToken>) {
    let mut gen = TokenGen::new(seed);
    let mut input = b"start \x1b[31mred\x1b[0m\r\n\x00\xff\xfe".to_vec();
    let mut tokens = Vec::new();
    for (i, kind) in TokenKind::ALL.into_iter().enumerate() {
        let t = gen.token(kind);
        input.extend_from_slice(format!("line {i}: token=").as_bytes());
        input.extend_from_slice(t.text.as_bytes());
        input.extend_from_slice(b"\r\n\x00\xc3\x28 ");
        tokens.push(t);
    }
    input.extend_from_slice(
        b"internal-hostname-7 TCK-123456 sess=00ff00ff; k/n+o w-n_secret k%2Fn%2Bo%20w-n_secret\n",
    );
    (input, tokens)
}

/// Returns the secret characters of a generated token: the part after the
/// last separator, or the 21 legacy characters. Base64 kinds are decoded
/// first.
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
    let text = String::from_utf8(plain).unwrap();
    let start = [
        text.rfind('.').map(|i| i + 1),
        text.rfind("%2e").map(|i| i + 3),
        text.rfind(' ').map(|i| i + 1),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap();
    text.as_bytes()[start..].to_vec()
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
            let run = &run[..run.len() / 4 * 4];
            let normal: Vec<u8> = run
                .iter()
                .map(|&b| match b {
                    b'-' => b'+',
                    b'_' => b'/',
                    b => b,
                })
                .collect();
            if let Ok(d) = base64::engine::general_purpose::STANDARD_NO_PAD.decode(&normal) {
                decodings.push(d);
            }
        }
    }
    decodings
}

/// Asserts that no 8-byte window of `secret` appears in `out`, as is or in
/// a base64 decoding.
fn assert_no_secret_window(out: &[u8], secret: &[u8], case: &str) {
    let decodings = base64_decodings(out);
    for w in secret.windows(8) {
        assert!(
            !contains(out, w),
            "{case}: {:?} survives in the output",
            String::from_utf8_lossy(w)
        );
        for d in &decodings {
            assert!(
                !contains(d, w),
                "{case}: {:?} survives in base64",
                String::from_utf8_lossy(w)
            );
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn chunk_sizes_match_whole() {
    let r = redactor(Policy::KeepId);
    let (input, _) = mixed_input(1);
    let (whole, whole_findings) = r.redact_all(&input);
    let window = r.rules().window();
    for size in 1..=window + 1 {
        let (out, findings) = redact_chunked(&r, &input, size);
        assert!(out == whole, "chunk size {size}: output differs");
        assert_eq!(
            sorted(findings),
            sorted(whole_findings.clone()),
            "chunk size {size}: findings"
        );
    }
}

#[test]
fn chunk_sizes_match_whole_user_rules() {
    for policy in all_policies() {
        let r = redactor_with_user_rules(policy.clone());
        let (input, _) = mixed_input(2);
        let (whole, whole_findings) = r.redact_all(&input);
        for size in (1..=64).chain([100, 255, 256, 257, 1000, 4096]) {
            let (out, findings) = redact_chunked(&r, &input, size);
            assert!(
                out == whole,
                "{} chunk size {size}: output differs",
                policy.name()
            );
            assert_eq!(
                sorted(findings),
                sorted(whole_findings.clone()),
                "{} chunk size {size}: findings",
                policy.name()
            );
        }
    }
}

#[test]
fn literal_inside_longer_literal_split() {
    // The short literal is complete before the long one is, at the same
    // chunk boundary; the long one must still be found.
    let r = Redactor::builder()
        .literal("long", b"abcdefgh")
        .literal("short", b"cde")
        .build()
        .unwrap();
    let input = b"xx abcdefgh yy";
    let (whole, _) = r.redact_all(input);
    assert_eq!(whole, b"xx ******** yy".to_vec());
    for size in 1..=input.len() {
        let (out, _) = redact_chunked(&r, input, size);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "xx ******** yy",
            "chunk size {size}"
        );
    }
}

#[test]
fn regex_earlier_start_split() {
    // `c` matches alone, but `acbbb` starts one byte earlier and must win
    // even when the chunk ends before the `b`s arrive.
    let r = Redactor::builder()
        .regex("r", "acb{3}|c", None)
        .build()
        .unwrap();
    let input = b"zz acbbb zz";
    let (whole, _) = r.redact_all(input);
    assert_eq!(whole, b"zz ***** zz".to_vec());
    for size in 1..=input.len() {
        let (out, _) = redact_chunked(&r, input, size);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "zz ***** zz",
            "chunk size {size}"
        );
    }
}

#[test]
fn keep_id_every_kind() {
    let r = redactor(Policy::KeepId);
    let mut gen = TokenGen::new(3);
    for kind in TokenKind::ALL {
        let t = gen.token(kind);
        let input = format!("<{}>", t.text);
        let (out, findings) = r.redact_all(input.as_bytes());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("<{}>", t.masked),
            "{kind:?}"
        );
        assert_eq!(findings.len(), 1, "{kind:?}: {findings:?}");
        assert_eq!(&*findings[0].rule, kind.rule(), "{kind:?}: rule");
        assert_eq!(findings[0].token_id, t.id, "{kind:?}: token id");
    }
}

#[test]
fn full_masks_whole_token() {
    let r = redactor(Policy::Full);
    let mut gen = TokenGen::new(4);
    let t = gen.token(TokenKind::Classic);
    let (out, findings) = r.redact_all(format!("a {} b", t.text).as_bytes());
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("a {} b", stars(96))
    );
    assert_eq!(findings[0].token_id, None);
    assert_eq!(findings[0].len, 96);

    let t = gen.token(TokenKind::PercentSeparators);
    let (out, _) = r.redact_all(t.text.as_bytes());
    assert_eq!(String::from_utf8(out).unwrap(), stars(t.text.len()));

    let t = gen.token(TokenKind::Legacy);
    let (out, _) = r.redact_all(t.text.as_bytes());
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("Api-Token {}", stars(21))
    );

    let t = gen.token(TokenKind::Base64);
    let (out, _) = r.redact_all(t.text.as_bytes());
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&out)
        .unwrap();
    let lead = decoded.len() - 96;
    assert_eq!(&decoded[lead..], stars(96).as_bytes());
}

#[test]
fn placeholder_replaces_span() {
    let r = redactor(Policy::Placeholder);
    let mut gen = TokenGen::new(5);
    let t = gen.token(TokenKind::Classic);
    let (out, findings) = r.redact_all(format!("a {} b\n", t.text).as_bytes());
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "a [REDACTED:dynatrace-token] b\n"
    );
    assert_eq!(findings[0].token_id, None);
    assert_eq!(findings[0].offset, 2);

    let t = gen.token(TokenKind::Legacy);
    let (out, _) = r.redact_all(t.text.as_bytes());
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "Api-Token [REDACTED:dynatrace-legacy-token]"
    );

    let t = gen.token(TokenKind::ShortSecret);
    let (out, _) = r.redact_all(format!("{};", t.text).as_bytes());
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "[REDACTED:dynatrace-partial-secret];"
    );

    // Overlapping spans of glued tokens share one placeholder.
    let a = gen.token(TokenKind::Classic);
    let b = gen.token(TokenKind::Classic);
    let (out, findings) = r.redact_all(format!("{}{} x", a.text, b.text).as_bytes());
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "[REDACTED:dynatrace-partial-secret] x"
    );
    assert_eq!(findings.len(), 2);
}

/// Returns the secret part of `out`, the output for a classic token.
fn fingerprint_of(r: &Redactor, token: &str) -> String {
    let (out, _) = r.redact_all(token.as_bytes());
    let out = String::from_utf8(out).unwrap();
    out[out.len() - 64..].to_string()
}

#[test]
fn fingerprint_shape_and_stability() {
    let key_a = Policy::Fingerprint(FingerprintKey::new(b"key-a"));
    let key_b = Policy::Fingerprint(FingerprintKey::new(b"key-b"));
    let (ra, rb) = (redactor(key_a), redactor(key_b));
    let mut gen = TokenGen::new(6);
    let t = gen.token(TokenKind::Classic);
    let other = gen.token(TokenKind::Classic);

    let fp = fingerprint_of(&ra, &t.text);
    assert!(fp.starts_with("fp:"), "{fp}");
    assert!(fp[3..].bytes().all(|b| b.is_ascii_hexdigit()), "{fp}");
    let (out, findings) = ra.redact_all(t.text.as_bytes());
    assert_eq!(&out[..32], &t.text.as_bytes()[..32], "token id kept");
    assert_eq!(findings[0].token_id, t.id);

    assert_eq!(fingerprint_of(&ra, &t.text), fp, "same key, same token");
    assert_ne!(fingerprint_of(&rb, &t.text), fp, "another key");
    assert_ne!(fingerprint_of(&ra, &other.text), fp, "another token");
    // Case and `%2E` separators do not change the fingerprint.
    assert_eq!(
        fingerprint_of(&ra, &t.text.to_ascii_lowercase()),
        fp,
        "lower case"
    );
    let percent = t.text.replacen('.', "%2E", 2);
    assert_eq!(fingerprint_of(&ra, &percent), fp, "percent separators");
}

#[test]
fn fingerprint_never_looks_like_token() {
    let r = redactor(Policy::Fingerprint(FingerprintKey::new(b"k")));
    let (input, tokens) = mixed_input(7);
    let (out, _) = r.redact_all(&input);
    let (again, findings) = Redactor::default().redact_all(&out);
    assert_eq!(again, out);
    assert!(findings.is_empty(), "{findings:?}");
    for t in &tokens {
        assert_no_secret_window(&out, &secret_of(t), &format!("{:?}", t.kind));
    }
}

#[test]
fn idempotent_every_policy() {
    for policy in all_policies() {
        for seed in 0..8 {
            let r = redactor(policy.clone());
            let (input, tokens) = mixed_input(seed);
            let (once, findings) = r.redact_all(&input);
            assert_eq!(
                findings.len(),
                tokens.len(),
                "{} seed {seed}: {findings:?}",
                policy.name()
            );
            let (twice, again) = r.redact_all(&once);
            assert!(
                twice == once,
                "{} seed {seed}: output changed",
                policy.name()
            );
            assert!(again.is_empty(), "{} seed {seed}: {again:?}", policy.name());
        }
    }
}

#[test]
fn idempotent_user_rules() {
    for policy in [Policy::KeepId, Policy::Full, Policy::Placeholder] {
        let r = redactor_with_user_rules(policy.clone());
        let (input, _) = mixed_input(9);
        let (once, _) = r.redact_all(&input);
        let (twice, again) = r.redact_all(&once);
        assert!(twice == once, "{}: output changed", policy.name());
        assert!(again.is_empty(), "{}: {again:?}", policy.name());
    }
}

/// Pushes `first`, flushes idle, pushes `rest`, and finishes.
fn with_idle_flush(r: &Redactor, first: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut stream = r.stream();
    let mut out = Vec::new();
    stream.push(first, &mut out);
    stream.flush_idle_into(&mut out);
    stream.push(rest, &mut out);
    stream.finish(&mut out);
    out
}

#[test]
fn idle_flush_every_split() {
    let mut gen = TokenGen::new(10);
    for policy in all_policies() {
        let r = redactor(policy.clone());
        for kind in TokenKind::ALL {
            let t = gen.token(kind);
            let input = format!("x={} y\n", t.text).into_bytes();
            let secret = secret_of(&t);
            for split in 0..=input.len() {
                let out = with_idle_flush(&r, &input[..split], &input[split..]);
                let case = format!("{} {kind:?} split {split}", policy.name());
                assert_no_secret_window(&out, &secret, &case);
                if policy.keeps_length() {
                    assert_eq!(out.len(), input.len(), "{case}: length");
                }
            }
        }
    }
}

#[test]
fn idle_flush_after_every_byte() {
    let mut gen = TokenGen::new(11);
    for policy in all_policies() {
        let r = redactor(policy.clone());
        let (input, tokens) = mixed_input(gen.next_u64());
        let mut stream = r.stream();
        let mut out = Vec::new();
        for &b in &input {
            stream.push(&[b], &mut out);
            stream.flush_idle_into(&mut out);
            assert_eq!(
                stream.held_back(),
                0,
                "{}: held back after flush",
                policy.name()
            );
        }
        stream.finish(&mut out);
        for t in &tokens {
            assert_no_secret_window(
                &out,
                &secret_of(t),
                &format!("{} {:?}", policy.name(), t.kind),
            );
        }
    }
}

#[test]
fn idle_flush_releases_plain_text() {
    for policy in all_policies() {
        let r = redactor(policy.clone());
        let mut stream = r.stream();
        let mut out = Vec::new();
        let text = b"plain line, no candidate \x00\xff\r\n partial literals: d dt DT0 api Api-";
        stream.push(text, &mut out);
        assert!(
            out.len() < text.len(),
            "{}: nothing held back",
            policy.name()
        );
        stream.flush_idle_into(&mut out);
        assert_eq!(out, text.to_vec(), "{}", policy.name());
        assert_eq!(stream.held_back(), 0, "{}", policy.name());
        stream.finish(&mut out);
        assert_eq!(out, text.to_vec(), "{}", policy.name());
        assert!(stream.take_findings().is_empty(), "{}", policy.name());
    }
}

#[test]
fn idle_flush_then_token_masked() {
    // A flush that releases the start of a prefix (`dt`) does not stop the
    // token from being found when the rest arrives.
    let r = redactor(Policy::KeepId);
    let t = TokenGen::new(12).token(TokenKind::Classic);
    let input = format!("id {} end", t.text);
    for split in 3..=5 {
        let out = with_idle_flush(&r, &input.as_bytes()[..split], &input.as_bytes()[split..]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("id {} end", t.masked),
            "split {split}"
        );
    }
}

#[test]
fn idle_flush_masks_from_secret_start() {
    // Documented over-masking: an undecided secret is masked from its
    // start, and the rest is masked when it is decided.
    let r = redactor(Policy::KeepId);
    let t = TokenGen::new(13).token(TokenKind::Classic);
    let first = format!("id {}", &t.text[..40]);
    let out = with_idle_flush(
        &r,
        first.as_bytes(),
        format!("{} end", &t.text[40..]).as_bytes(),
    );
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("id {} end", t.masked)
    );
    // A run that ends short of a partial secret was masked anyway.
    let id = &t.text[..32];
    let out = with_idle_flush(&r, format!("{id}ABC").as_bytes(), b" end");
    assert_eq!(String::from_utf8(out).unwrap(), format!("{id}*** end"));
}

#[test]
fn findings_offsets_and_ids() {
    let mut gen = TokenGen::new(14);
    let classic = gen.token(TokenKind::Classic);
    let percent = gen.token(TokenKind::PercentSeparators);
    let legacy = gen.token(TokenKind::Legacy);
    let b64 = gen.token(TokenKind::Base64);
    let short = gen.token(TokenKind::ShortSecret);
    let parts = [
        "head\n",
        &classic.text,
        " ",
        &percent.text,
        "\n",
        &legacy.text,
        "\n",
        &b64.text,
        "\n",
        &short.text,
        "\n",
    ];
    let input = parts.concat();
    let at = |i: usize| parts[..i].concat().len() as u64;
    let expected = [
        (RULE_TOKEN, Encoding::Plain, at(1), 96, classic.id.clone()),
        (
            RULE_TOKEN,
            Encoding::Percent,
            at(3),
            percent.text.len() as u64,
            percent.id.clone(),
        ),
        (RULE_LEGACY, Encoding::Context, at(5) + 10, 21, None),
        (
            RULE_TOKEN,
            Encoding::Base64,
            at(7),
            b64.text.trim_end_matches('=').len() as u64,
            b64.id.clone(),
        ),
        (
            RULE_PARTIAL,
            Encoding::Plain,
            at(9),
            short.text.len() as u64,
            short.id.clone(),
        ),
    ];
    let r = redactor(Policy::KeepId);
    for size in [1, 7, 64, input.len()] {
        let (_, findings) = redact_chunked(&r, input.as_bytes(), size);
        let findings = sorted(findings);
        assert_eq!(
            findings.len(),
            expected.len(),
            "chunk size {size}: {findings:?}"
        );
        for (f, (rule, encoding, offset, len, id)) in findings.iter().zip(&expected) {
            let case = format!("chunk size {size}, {rule} at {offset}");
            assert_eq!(&*f.rule, *rule, "{case}: rule");
            assert_eq!(f.encoding, *encoding, "{case}: encoding");
            assert_eq!(f.offset, *offset, "{case}: offset");
            assert_eq!(f.len, *len, "{case}: len");
            assert_eq!(&f.token_id, id, "{case}: token id");
        }
    }
}

#[test]
fn findings_hide_id_when_output_does() {
    let t = TokenGen::new(15).token(TokenKind::Classic);
    for policy in all_policies() {
        let (_, findings) = redactor(policy.clone()).redact_all(t.text.as_bytes());
        let id = policy.reveals_id().then(|| t.id.clone().unwrap());
        assert_eq!(findings[0].token_id, id, "{}", policy.name());
    }
}

#[test]
fn spare_and_commit_match_push() {
    let r = redactor(Policy::KeepId);
    let (input, _) = mixed_input(16);
    let (whole, _) = r.redact_all(&input);
    let mut stream: Stream = r.stream_with_capacity(4096);
    let mut out = Vec::new();
    let mut rest = &input[..];
    while !rest.is_empty() {
        let spare = stream.spare();
        let n = spare.len().min(rest.len()).min(97);
        spare[..n].copy_from_slice(&rest[..n]);
        stream.commit(n);
        rest = &rest[n..];
        loop {
            let ready = stream.output().to_vec();
            if ready.is_empty() {
                break;
            }
            out.extend_from_slice(&ready);
            stream.consume(ready.len());
        }
    }
    stream.finish(&mut out);
    assert!(out == whole);
    assert_eq!(stream.bytes_in(), input.len() as u64);
    assert_eq!(stream.bytes_out(), input.len() as u64);
}

#[test]
fn idle_flush_hides_known_secret_prefix() {
    let value = b"correct-horse-battery-staple";
    for policy in all_policies() {
        let r = Redactor::builder()
            .policy(policy.clone())
            .known_secret("known", value)
            .build()
            .unwrap();
        for split in 1..value.len() {
            let mut first = b"key=".to_vec();
            first.extend_from_slice(&value[..split]);
            let mut rest = value[split..].to_vec();
            rest.extend_from_slice(b" end\n");
            let out = with_idle_flush(&r, &first, &rest);
            assert_no_secret_window(&out, value, &format!("{} split {split}", policy.name()));
            assert!(
                out.starts_with(b"key="),
                "{} split {split}: context",
                policy.name()
            );
        }
    }
}

#[test]
fn reset_stream_matches_new_stream() {
    for policy in all_policies() {
        let r = redactor_with_user_rules(policy.clone());
        let (first, _) = mixed_input(3);
        let (second, _) = mixed_input(4);
        let (fresh, fresh_findings) = redact_chunked(&r, &second, 7);
        // A stream that took a longer input, held back an undecided
        // candidate at its end and was reset mid-way, then took `second`.
        let mut stream = r.stream_with_capacity(7);
        let mut out = Vec::new();
        stream.push(&first, &mut out);
        stream.push(b"dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX.", &mut out);
        assert!(
            stream.held_back() > 0,
            "{}: nothing held back",
            policy.name()
        );
        stream.reset();
        assert_eq!((stream.bytes_in(), stream.held_back()), (0, 0));
        assert!(!stream.has_findings());
        let mut out = Vec::new();
        for chunk in second.chunks(7) {
            stream.push(chunk, &mut out);
        }
        stream.finish(&mut out);
        assert!(
            out == fresh,
            "{}: output differs after reset",
            policy.name()
        );
        assert_eq!(
            sorted(stream.take_findings()),
            sorted(fresh_findings),
            "{}: findings differ after reset",
            policy.name()
        );
        // A finished stream can be reset and used again too.
        stream.reset();
        let mut again = Vec::new();
        stream.push(&second, &mut again);
        stream.finish(&mut again);
        assert!(
            again == fresh,
            "{}: output differs after finish and reset",
            policy.name()
        );
    }
}

#[test]
fn candidate_in_any_finds_each_input() {
    let (input, _) = mixed_input(5);
    let builtin = redactor(Policy::KeepId);
    let user = redactor_with_user_rules(Policy::KeepId);
    let anchored = Redactor::builder()
        .regex("anchored", "^secret-[0-9]{4}$", None)
        .build()
        .unwrap();
    let clean: [&[u8]; 3] = [b"application/json", b"1024", b"curl/8.5.0"];

    for r in [&builtin, &user, &anchored] {
        assert!(!r.has_candidate_in_any(clean), "clean values");
        assert!(!r.has_candidate_in_any(std::iter::empty()), "no values");
        // Every line of the mixed input, alone and among clean values.
        for line in input.split(|&b| b == b'\n') {
            let values = [clean[0], line, clean[1]];
            if r.has_candidate(line) {
                assert!(r.has_candidate_in_any(values), "{line:?}");
            }
        }
    }

    // A token among 50 values, first, in the middle and last; then the
    // same values without it, in a check that reuses the joined buffer.
    let filler = [b'v'; 40];
    for at in [0, 20, 24, 25, 26, 49] {
        let mut values: Vec<&[u8]> = vec![&filler[..]; 50];
        values[at] = b"Api-Token dt0c01.X";
        assert!(
            builtin.has_candidate_in_any(values.iter().copied()),
            "token at value {at}"
        );
        values[at] = &filler[..];
        assert!(
            !builtin.has_candidate_in_any(values.iter().copied()),
            "clean, {at}"
        );
    }

    // An anchored regex is matched against each value from its own start.
    assert!(anchored.has_candidate_in_any([&b"text/plain"[..], b"secret-1234"]));
    assert!(builtin.has_candidate_in_any([&b"x"[..], b"Api-Token dt0c01.X"]));
}

#[test]
fn is_same_tells_clones_from_rebuilds() {
    let r = redactor(Policy::KeepId);
    assert!(r.is_same(&r.clone()));
    assert!(!r.is_same(&r.with_policy(Policy::Full)));
    assert!(!r.is_same(&redactor(Policy::KeepId)));
}

#[test]
fn redact_whole_matches_stream() {
    let (mixed, _) = mixed_input(6);
    for policy in all_policies() {
        for r in [
            redactor(policy.clone()),
            redactor_with_user_rules(policy.clone()),
        ] {
            // A stream used before, left with bytes held back.
            let mut stream = r.stream_with_capacity(64);
            let mut scratch = Vec::new();
            stream.push(b"dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX.", &mut scratch);

            // Each kind of token first, after clean text of every length up
            // to past the look-behind, so the stream starts at every offset
            // before each kind's candidate.
            let mut gen = TokenGen::new(7);
            for (kind, lead) in TokenKind::ALL
                .into_iter()
                .flat_map(|k| (0..20).map(move |n| (k, n)))
            {
                let mut input = "clean text ".repeat(3).into_bytes();
                input.truncate(lead);
                input.extend_from_slice(gen.token(kind).text.as_bytes());
                input.push(b'\n');
                input.extend_from_slice(&mixed);
                let (want, want_findings) = redact_chunked(&r, &input, 4096);
                let mut out = b"kept".to_vec();
                let case = format!("{} {kind:?} after {lead} bytes", policy.name());
                assert!(stream.redact_whole(&input, &mut out), "{case}");
                assert!(
                    out[4..] == want[..] && out.starts_with(b"kept"),
                    "{case}: output differs"
                );
                assert_eq!(
                    sorted(stream.take_findings()),
                    sorted(want_findings),
                    "{case}: findings"
                );
                assert_eq!(stream.bytes_in(), input.len() as u64);
                assert_eq!(stream.bytes_out(), want.len() as u64);
            }

            let mut out = Vec::new();
            assert!(!stream.redact_whole(b"no candidate here", &mut out));
            assert!(out.is_empty());
            assert!(!stream.has_findings());
        }
    }
}
