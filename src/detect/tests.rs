//! Table tests of the detection rules, one group per clause of the product
//! rule, run through [`Redactor::redact_all`] with the `keep-id` policy.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;

use crate::redact::BuildError;
use crate::synth::TokenGen;
use crate::{Encoding, Finding, Redactor, RULE_LEGACY, RULE_PARTIAL, RULE_TOKEN};

use super::RuleError;

/// Alphabet of Dynatrace's published examples.
const TOKEN_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const LEGACY_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";

/// Returns `n` pseudo-random token characters; equal seeds give equal text.
fn chars(seed: u64, n: usize) -> String {
    TokenGen::new(seed).string(TOKEN_ALPHABET, n)
}

fn stars(n: usize) -> String {
    "*".repeat(n)
}

/// A three-part token with generated public and secret parts.
struct Parts {
    prefix: String,
    public: String,
    secret: String,
}

impl Parts {
    fn new(prefix: &str, public_len: usize, secret_len: usize, seed: u64) -> Parts {
        Parts {
            prefix: prefix.to_string(),
            public: chars(seed, public_len),
            secret: chars(seed ^ 0x5eed, secret_len),
        }
    }

    fn text(&self) -> String {
        format!("{}.{}.{}", self.prefix, self.public, self.secret)
    }

    fn id(&self) -> String {
        format!("{}.{}", self.prefix, self.public)
    }

    /// Returns the text `keep-id` writes for this token.
    fn masked(&self) -> String {
        let n = self.secret.len().min(128);
        format!("{}.{}{}", self.id(), stars(n), &self.secret[n..])
    }
}

fn redact(input: &[u8]) -> (Vec<u8>, Vec<Finding>) {
    Redactor::default().redact_all(input)
}

fn redact_str(input: &str) -> (String, Vec<Finding>) {
    let (out, findings) = redact(input.as_bytes());
    (
        String::from_utf8(out).expect("output of UTF-8 input is UTF-8"),
        findings,
    )
}

/// Asserts that `input` passes unchanged and without findings.
fn assert_passes(input: &str, case: &str) {
    let (out, findings) = redact_str(input);
    assert_eq!(out, input, "{case}: output");
    assert!(findings.is_empty(), "{case}: findings {findings:?}");
}

/// Asserts one finding of `rule` and the expected output.
fn assert_one(input: &str, expected: &str, rule: &str, case: &str) -> Finding {
    let (out, findings) = redact_str(input);
    assert_eq!(out, expected, "{case}: output");
    assert_eq!(findings.len(), 1, "{case}: findings {findings:?}");
    assert_eq!(&*findings[0].rule, rule, "{case}: rule");
    findings[0].clone()
}

#[test]
fn family_any_letter_any_digits() {
    let digit_pairs = ["00", "01", "02", "09", "10", "16", "42", "99"];
    let mut seed = 0;
    for letter in ('a'..='z').chain('A'..='Z') {
        for digits in digit_pairs {
            seed += 1;
            let prefix = format!("dt0{letter}{digits}");
            let t = Parts::new(&prefix, 24, 64, seed);
            let scim = letter.eq_ignore_ascii_case(&'s') && digits == "01";
            let expected = if scim {
                format!("{prefix}.{}.{}", stars(24), stars(64))
            } else {
                t.masked()
            };
            let f = assert_one(&t.text(), &expected, RULE_TOKEN, &prefix);
            assert_eq!(f.offset, 0, "{prefix}: offset");
            assert_eq!(f.len, 96, "{prefix}: len");
            let id = (!scim).then(|| t.id());
            assert_eq!(f.token_id, id, "{prefix}: token id");
        }
    }
}

#[test]
fn family_prefix_negatives() {
    for prefix in [
        "dt0101", "dt0_01", "dt0ca1", "dt0c1a", "dt1c01", "dtoc01", "dt00c01", "d0c01", "dt0c0",
        "t0c01", "dt0c001",
    ] {
        let text = Parts::new(prefix, 24, 64, 7).text();
        assert_passes(&text, prefix);
    }
}

#[test]
fn public_part_lengths() {
    for len in 8..=128 {
        let t = Parts::new("dt0c01", len, 64, len as u64);
        let f = assert_one(&t.text(), &t.masked(), RULE_TOKEN, &format!("public {len}"));
        assert_eq!(f.token_id, Some(t.id()), "public {len}: token id");
    }
    for len in [0, 1, 6, 7, 129, 130, 200] {
        let t = Parts::new("dt0c01", len, 64, len as u64);
        assert_passes(&t.text(), &format!("public {len}"));
    }
}

#[test]
fn public_part_alphabet() {
    let secret = chars(3, 64);
    let masked = stars(64);
    // `-` and lower case belong to the public part.
    for public in ["abcd-efgh", "--------", "AbCd1234-xyz"] {
        let input = format!("dt0c01.{public}.{secret}");
        let expected = format!("dt0c01.{public}.{masked}");
        assert_one(&input, &expected, RULE_TOKEN, public);
    }
    for public in [
        "ABCD_EFGH",
        "ABCD EFGH",
        "ABCD/EFGH",
        "ABCD+EFGH",
        "ABCDÉFGH",
    ] {
        let input = format!("dt0c01.{public}.{secret}");
        assert_passes(&input, public);
    }
}

#[test]
fn case_insensitive_matching() {
    let t = Parts::new("dt0c01", 24, 64, 11);
    let text = t.text();
    let masked = t.masked();
    let upper = (text.to_ascii_uppercase(), masked.to_ascii_uppercase());
    let lower = (text.to_ascii_lowercase(), masked.to_ascii_lowercase());
    let mixed: (String, String) = {
        let flip = |s: &str| {
            s.chars()
                .enumerate()
                .map(|(i, c)| {
                    if i % 2 == 0 {
                        c.to_ascii_lowercase()
                    } else {
                        c.to_ascii_uppercase()
                    }
                })
                .collect::<String>()
        };
        (flip(&text), flip(&masked))
    };
    for (case, (input, expected)) in [("upper", upper), ("lower", lower), ("mixed", mixed)] {
        let f = assert_one(&input, &expected, RULE_TOKEN, case);
        assert_eq!(
            f.token_id.as_deref(),
            Some(&input[..31]),
            "{case}: token id"
        );
    }
    for prefix in ["DT0C01", "Dt0c01", "dT0C01", "DT0c01"] {
        let t = Parts::new(prefix, 24, 64, 12);
        assert_one(&t.text(), &t.masked(), RULE_TOKEN, prefix);
    }
    // SCIM tokens in any case mask their public part.
    let t = Parts::new("DT0S01", 24, 64, 13);
    let expected = format!("DT0S01.{}.{}", stars(24), stars(64));
    assert_one(&t.text(), &expected, RULE_TOKEN, "upper scim");
}

#[test]
fn no_left_boundary() {
    let t = Parts::new("dt0c01", 24, 64, 21);
    for before in [
        "%20", "%3D", "%3d", "abc", "x", "_", "0", "9", "-", "Bearer ", "=", "dt0", "dt0c",
        "dt0c01.",
    ] {
        let input = format!("{before}{}", t.text());
        let expected = format!("{before}{}", t.masked());
        let f = assert_one(&input, &expected, RULE_TOKEN, before);
        assert_eq!(f.offset, before.len() as u64, "{before}: offset");
    }
}

#[test]
fn right_boundary() {
    let t = Parts::new("dt0c01", 24, 64, 31);
    for after in [
        "", " ", "\n", "\r\n", "\"", "&", "-", "_", ".", "%", "/", ":", ",", "\0", "\u{00e9}",
    ] {
        let input = format!("{}{after}", t.text());
        let expected = format!("{}{after}", t.masked());
        assert_one(&input, &expected, RULE_TOKEN, &format!("after {after:?}"));
    }
    // An alphanumeric byte after 64 characters makes a run of 65: a partial
    // secret, masked whole.
    for after in ["A", "z", "0", "9", "Q7"] {
        let input = format!("{}{after}", t.text());
        let expected = format!("{}.{}", t.id(), stars(64 + after.len()));
        assert_one(&input, &expected, RULE_PARTIAL, &format!("after {after:?}"));
    }
}

#[test]
fn partial_secret_lengths() {
    for len in (16..=63).chain(65..=128) {
        let t = Parts::new("dt0c01", 24, len, len as u64);
        let input = format!("{} end", t.text());
        let expected = format!("{} end", t.masked());
        let f = assert_one(&input, &expected, RULE_PARTIAL, &format!("secret {len}"));
        assert_eq!(f.len, (32 + len) as u64, "secret {len}: len");
        assert_eq!(f.token_id, Some(t.id()), "secret {len}: token id");
        assert_eq!(f.encoding, Encoding::Plain, "secret {len}: encoding");
    }
}

#[test]
fn short_runs_pass() {
    for len in 0..16 {
        let t = Parts::new("dt0c01", 24, len, len as u64);
        assert_passes(&format!("{} end", t.text()), &format!("secret {len}"));
        assert_passes(&t.text(), &format!("secret {len} at end"));
    }
}

#[test]
fn long_runs_mask_128() {
    for len in [129, 130, 200, 300, 1000] {
        let t = Parts::new("dt0c01", 24, len, len as u64);
        let input = format!("{} end", t.text());
        let expected = format!("{}.{}{} end", t.id(), stars(128), &t.secret[128..]);
        let f = assert_one(&input, &expected, RULE_PARTIAL, &format!("secret {len}"));
        assert_eq!(f.len, 32 + 128, "secret {len}: len");
    }
}

#[test]
fn scim_masked_whole() {
    let t = Parts::new("dt0s01", 24, 64, 41);
    let input = format!("scim={}\n", t.text());
    let expected = format!("scim=dt0s01.{}.{}\n", stars(24), stars(64));
    let f = assert_one(&input, &expected, RULE_TOKEN, "scim");
    assert_eq!(f.token_id, None, "scim: token id");
    // A partial SCIM secret hides the public part too.
    let t = Parts::new("dt0s01", 24, 40, 42);
    let expected = format!("dt0s01.{}.{}", stars(24), stars(40));
    let f = assert_one(&t.text(), &expected, RULE_PARTIAL, "partial scim");
    assert_eq!(f.token_id, None, "partial scim: token id");
    // Only type 01 is SCIM.
    for prefix in ["dt0s02", "dt0s11", "dt0c01"] {
        let t = Parts::new(prefix, 24, 64, 43);
        assert_one(&t.text(), &t.masked(), RULE_TOKEN, prefix);
    }
}

#[test]
fn two_part_identifiers_pass() {
    let classic = format!("dt0c01.{}", chars(51, 24));
    let client = format!("dt0s02.{}", chars(52, 8));
    for input in [
        classic.clone(),
        format!("{classic} "),
        format!("{classic}."),
        format!("{classic}.\n"),
        format!("{classic}.{}", chars(53, 15)),
        format!("{{\"id\":\"{classic}\"}}"),
        client.clone(),
        format!("client_id={client}&scope=x"),
        format!("{client}%2E"),
    ] {
        assert_passes(&input, &input);
    }
}

#[test]
fn percent_separators_kept() {
    let t = Parts::new("dt0c01", 24, 64, 61);
    for (s1, s2) in [
        ("%2E", "%2E"),
        ("%2e", "%2e"),
        ("%2E", "."),
        (".", "%2e"),
        ("%2e", "%2E"),
    ] {
        let input = format!("x={}{s1}{}{s2}{}&y", t.prefix, t.public, t.secret);
        let expected = format!("x={}{s1}{}{s2}{}&y", t.prefix, t.public, stars(64));
        let case = format!("{s1} {s2}");
        let f = assert_one(&input, &expected, RULE_TOKEN, &case);
        assert_eq!(f.token_id, Some(t.id()), "{case}: token id");
        let encoding = if s1 == "." && s2 == "." {
            Encoding::Plain
        } else {
            Encoding::Percent
        };
        assert_eq!(f.encoding, encoding, "{case}: encoding");
        assert_eq!(f.offset, 2, "{case}: offset");
    }
    for sep in ["%2F", "%20", "%2", "%E", "%%2E", "%3E"] {
        let input = format!("{}{sep}{}.{}", t.prefix, t.public, t.secret);
        assert_passes(&input, sep);
    }
}

#[test]
fn glued_tokens_both_found() {
    let a = Parts::new("dt0c01", 24, 64, 71);
    let b = Parts::new("dt0c01", 24, 64, 72);
    let input = format!("{}{}", a.text(), b.text());
    // The first secret runs on through the second prefix: 70 characters.
    let expected = format!("{}.{}.{}.{}", a.id(), stars(70), b.public, stars(64));
    let (out, findings) = redact_str(&input);
    assert_eq!(out, expected);
    assert_eq!(findings.len(), 2, "{findings:?}");
    assert_eq!(&*findings[0].rule, RULE_PARTIAL);
    assert_eq!(findings[0].offset, 0);
    assert_eq!(findings[0].token_id, Some(a.id()));
    assert_eq!(&*findings[1].rule, RULE_TOKEN);
    assert_eq!(findings[1].offset, 96);
    assert_eq!(findings[1].token_id, Some(b.id()));
}

/// Base64 engines by name, and whether the engine is URL-safe.
fn base64_engines() -> [(&'static str, base64::engine::GeneralPurpose, bool); 4] {
    [
        ("standard", STANDARD, false),
        ("standard no pad", STANDARD_NO_PAD, false),
        ("url-safe", URL_SAFE, true),
        ("url-safe no pad", URL_SAFE_NO_PAD, true),
    ]
}

#[test]
fn base64_every_alignment() {
    let t = Parts::new("dt0c01", 24, 64, 81);
    // Trailing bytes 0xff make the encoding use `/` or `_`, so that the
    // alphabet shows; they also end the secret run.
    for (name, engine, url_safe) in base64_engines() {
        for lead in [&b""[..], b"u", b"us"] {
            for tail in [&b""[..], b"\xff", b"\xff\xfe", b"\xff\xfe\xfd"] {
                let case = format!("{name}, lead {}, tail {}", lead.len(), tail.len());
                let mut plain = lead.to_vec();
                plain.extend_from_slice(t.text().as_bytes());
                plain.extend_from_slice(tail);
                let encoded = engine.encode(&plain);
                let input = format!("data: {encoded}\n");
                let (out, findings) = redact(input.as_bytes());
                assert_eq!(out.len(), input.len(), "{case}: length");
                let out = String::from_utf8(out).unwrap();
                let body = out
                    .strip_prefix("data: ")
                    .and_then(|s| s.strip_suffix('\n'));
                let body = body.unwrap_or_else(|| panic!("{case}: context changed: {out}"));
                let decoded = engine
                    .decode(body)
                    .unwrap_or_else(|e| panic!("{case}: {e}"));
                let mut expected = lead.to_vec();
                expected.extend_from_slice(t.masked().as_bytes());
                expected.extend_from_slice(tail);
                assert_eq!(decoded, expected, "{case}: decoded output");
                assert_eq!(findings.len(), 1, "{case}: {findings:?}");
                let f = &findings[0];
                assert_eq!(&*f.rule, RULE_TOKEN, "{case}: rule");
                assert_eq!(f.token_id, Some(t.id()), "{case}: token id");
                let has_url_chars = encoded.contains(['-', '_']);
                let encoding = if url_safe && has_url_chars {
                    Encoding::Base64Url
                } else {
                    Encoding::Base64
                };
                assert_eq!(f.encoding, encoding, "{case}: encoding");
                assert_eq!(f.offset, 6, "{case}: offset");
            }
        }
    }
}

#[test]
fn base64_other_shapes() {
    let scim = Parts::new("dt0s01", 24, 64, 82);
    let scim_masked = format!("dt0s01.{}.{}", stars(24), stars(64));
    let partial = Parts::new("dt0c01", 24, 40, 83);
    let lower = Parts::new("dt0c01", 24, 64, 84);
    let platform = Parts::new("dt0s16", 8, 64, 85);
    let cases = [
        ("scim", scim.text(), scim_masked, RULE_TOKEN),
        ("partial", partial.text(), partial.masked(), RULE_PARTIAL),
        (
            "lower case",
            lower.text().to_ascii_lowercase(),
            lower.masked().to_ascii_lowercase(),
            RULE_TOKEN,
        ),
        (
            "basic auth",
            format!("user:{}", platform.text()),
            format!("user:{}", platform.masked()),
            RULE_TOKEN,
        ),
    ];
    for (case, plain, masked, rule) in cases {
        let input = STANDARD.encode(&plain);
        let expected = STANDARD.encode(&masked);
        assert_one(&input, &expected, rule, case);
    }
    // Identifiers and short runs stay unchanged when encoded too.
    for plain in [
        format!("dt0c01.{}", chars(86, 24)),
        format!("dt0c01.{}.{}", chars(87, 24), chars(88, 15)),
        format!("dt0c01.{}.{}", chars(89, 7), chars(90, 64)),
    ] {
        assert_passes(&STANDARD.encode(&plain), &plain);
    }
}

#[test]
fn legacy_contexts() {
    let secret = TokenGen::new(91).string(LEGACY_ALPHABET, 21);
    for context in [
        "Api-Token ",
        "api-token ",
        "API-TOKEN ",
        "Api-Token%20",
        "Api-Token=",
        "api-token=",
        "Api-Token%3D",
        "Api-Token%3d",
    ] {
        for after in ["", " ", "\n", "&x=1", "\"", "/", ":"] {
            let input = format!("Authorization: {context}{secret}{after}");
            let expected = format!("Authorization: {context}{}{after}", stars(21));
            let case = format!("{context:?} then {after:?}");
            let f = assert_one(&input, &expected, RULE_LEGACY, &case);
            assert_eq!(f.encoding, Encoding::Context, "{case}: encoding");
            assert_eq!(f.offset, (15 + context.len()) as u64, "{case}: offset");
            assert_eq!(f.len, 21, "{case}: len");
            assert_eq!(f.token_id, None, "{case}: token id");
        }
    }
}

#[test]
fn legacy_negatives() {
    let gen = |n| TokenGen::new(92).string(LEGACY_ALPHABET, n);
    let s21 = gen(21);
    for input in [
        format!("Api-Token {}", gen(20)),
        format!("Api-Token {} ", gen(20)),
        format!("Api-Token {}", gen(22)),
        format!("Api-Token {s21}."),
        format!("Api-Token {s21}.example.com"),
        format!("Api-Token {s21}-"),
        format!("Api-Token {s21}_"),
        format!("Api-Token {s21}a"),
        format!("Api-Token:{s21}"),
        format!("Api-Token\t{s21}"),
        format!("Api-Token%2F{s21}"),
        format!("Api-Token  {s21}"),
        format!("Api-Tokens {s21}"),
        format!("Api Token {s21}"),
        s21.clone(),
    ] {
        assert_passes(&input, &input);
    }
}

/// Reads the example lines that ship beside the checkout.
#[test]
fn examples_file_rows() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/spec/dynatrace-examples.tsv"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!("cannot read the examples file {path}: {e}; it must sit beside the checkout as ../shared")
    });
    let mut rows = 0;
    for (n, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(
            fields.len(),
            5,
            "line {}: expected 5 tab-separated fields",
            n + 1
        );
        let (id, input, contains, expected) = (fields[0], fields[2], fields[3], fields[4]);
        let (out, findings) = redact_str(input);
        assert_eq!(out, expected, "{id}: output");
        match contains {
            "yes" => assert!(!findings.is_empty(), "{id}: no finding"),
            "no" => {
                assert!(findings.is_empty(), "{id}: findings {findings:?}");
                assert_eq!(out, input, "{id}: changed");
            }
            other => panic!("{id}: contains_token is {other:?}, expected yes or no"),
        }
        rows += 1;
    }
    assert!(rows > 0, "the examples file has no rows");
}

#[test]
fn user_literal_rule() {
    let r = Redactor::builder()
        .literal("db-password", b"hunter2hunter2")
        .build()
        .unwrap();
    let (out, findings) = r.redact_all(b"a=hunter2hunter2 b=hunter2hunter2\n");
    assert_eq!(out, b"a=************** b=**************\n");
    assert_eq!(findings.len(), 2);
    assert_eq!(&*findings[0].rule, "db-password");
    assert_eq!(findings[0].offset, 2);
    assert_eq!(findings[0].len, 14);
    assert_eq!(findings[1].offset, 19);
    assert_eq!(findings[0].encoding, Encoding::Plain);
}

#[test]
fn user_regex_rules() {
    let r = Redactor::builder()
        .regex("ticket", "TCK-[0-9]{6}", None)
        .regex("session", "sess=[a-f0-9]+", Some(40))
        .build()
        .unwrap();
    let input = b"id TCK-123456 and TCK-12345 sess=deadbeef;\n";
    let (out, findings) = r.redact_all(input);
    assert_eq!(
        out,
        b"id ********** and TCK-12345 *************;\n".to_vec()
    );
    let rules: Vec<&str> = findings.iter().map(|f| &*f.rule).collect();
    assert_eq!(rules, ["ticket", "session"]);
    assert_eq!(findings[0].offset, 3);
    assert_eq!(findings[1].offset, 28);
    assert_eq!(findings[1].len, 13);
}

#[test]
fn user_regex_max_len_bounds_match() {
    let r = Redactor::builder()
        .regex("run", "x[a-z]+", Some(5))
        .build()
        .unwrap();
    let (out, findings) = r.redact_all(b"xabcdefgh.");
    // The match is cut at 5 bytes, and the rest of the run passes.
    assert_eq!(out, b"*****efgh.".to_vec());
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].len, 5);
}

#[test]
fn user_regex_rejections() {
    let unbounded = Redactor::builder().regex("r", "a+", None).build();
    assert!(
        matches!(
            unbounded,
            Err(BuildError::Rule(RuleError::Regex(
                super::user::RegexError::Unbounded { .. }
            )))
        ),
        "{unbounded:?}"
    );
    let zero = Redactor::builder().regex("r", "a+", Some(0)).build();
    assert!(
        matches!(zero, Err(BuildError::Rule(RuleError::Regex(_)))),
        "{zero:?}"
    );
    let huge = Redactor::builder()
        .regex("r", "a+", Some(super::user::REGEX_MAX_LEN + 1))
        .build();
    assert!(
        matches!(huge, Err(BuildError::Rule(RuleError::Regex(_)))),
        "{huge:?}"
    );
    let empty = Redactor::builder().regex("r", "a*", Some(10)).build();
    assert!(
        matches!(
            empty,
            Err(BuildError::Rule(RuleError::Regex(
                super::user::RegexError::Empty { .. }
            )))
        ),
        "{empty:?}"
    );
    let invalid = Redactor::builder().regex("r", "(", Some(10)).build();
    assert!(
        matches!(invalid, Err(BuildError::Rule(RuleError::Regex(_)))),
        "{invalid:?}"
    );
    let duplicate = Redactor::builder()
        .literal("x", b"abc")
        .literal("x", b"def")
        .build();
    assert!(
        matches!(
            duplicate,
            Err(BuildError::Rule(RuleError::DuplicateName(_)))
        ),
        "{duplicate:?}"
    );
    let builtin_name = Redactor::builder().literal(RULE_TOKEN, b"abc").build();
    assert!(
        matches!(
            builtin_name,
            Err(BuildError::Rule(RuleError::DuplicateName(_)))
        ),
        "{builtin_name:?}"
    );
    let bad_name = Redactor::builder().literal("a b", b"abc").build();
    assert!(
        matches!(bad_name, Err(BuildError::Rule(RuleError::InvalidName(_)))),
        "{bad_name:?}"
    );
    let empty_literal = Redactor::builder().literal("x", b"").build();
    assert!(
        matches!(
            empty_literal,
            Err(BuildError::Rule(RuleError::LiteralLength { .. }))
        ),
        "{empty_literal:?}"
    );
}

#[test]
fn known_secret_plain_and_percent() {
    let value = b"s3cr3t/value+with space";
    let r = Redactor::builder()
        .known_secret("app-key", value)
        .build()
        .unwrap();
    let upper = "s3cr3t%2Fvalue%2Bwith%20space";
    let lower = "s3cr3t%2fvalue%2bwith%20space";
    let input = format!(
        "a={} b={upper} c={lower}\n",
        std::str::from_utf8(value).unwrap()
    );
    let (out, findings) = r.redact_all(input.as_bytes());
    let expected = format!(
        "a={} b={} c={}\n",
        stars(value.len()),
        stars(upper.len()),
        stars(lower.len())
    );
    assert_eq!(String::from_utf8(out).unwrap(), expected);
    let encodings: Vec<Encoding> = findings.iter().map(|f| f.encoding).collect();
    assert_eq!(
        encodings,
        [Encoding::Plain, Encoding::Percent, Encoding::Percent]
    );
    assert!(findings.iter().all(|f| &*f.rule == "app-key"));
}

#[test]
fn known_secret_base64_forms() {
    let value = b"correct-horse-battery-staple-42";
    let r = Redactor::builder()
        .known_secret("app-key", value)
        .build()
        .unwrap();
    for (name, engine, _) in base64_engines() {
        for lead in [&b""[..], b"k", b"ke"] {
            let case = format!("{name}, lead {}", lead.len());
            let mut plain = lead.to_vec();
            plain.extend_from_slice(value);
            plain.extend_from_slice(b"\n\xff");
            let encoded = engine.encode(&plain);
            let (out, findings) = r.redact_all(encoded.as_bytes());
            assert_eq!(out.len(), encoded.len(), "{case}: length");
            assert!(!findings.is_empty(), "{case}: no finding");
            let decoded = engine
                .decode(&out)
                .unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(&decoded[..lead.len()], lead, "{case}: lead");
            // Bits of the first and last byte share characters with their
            // neighbours, so only the inner bytes are sure to be masked.
            let inner = &decoded[lead.len() + 1..lead.len() + value.len() - 1];
            assert!(
                inner.iter().all(|&b| b == b'*'),
                "{case}: {:?}",
                String::from_utf8_lossy(&decoded)
            );
        }
    }
}

#[test]
fn known_secret_length_limits() {
    let short = Redactor::builder().known_secret("k", b"1234567").build();
    assert!(
        matches!(short, Err(BuildError::Rule(RuleError::SecretLength { .. }))),
        "{short:?}"
    );
    let ok = Redactor::builder().known_secret("k", b"12345678").build();
    assert!(ok.is_ok(), "{ok:?}");
}
