//! Fixed byte strings to mask: known secret values and their encoded
//! forms, and literal user rules.

use super::base64::determined_chars;
use super::Encoding;

/// Shortest known secret value accepted. Shorter values would mask common
/// words and numbers all over a log.
pub const KNOWN_SECRET_MIN: usize = 8;
/// Longest literal or known secret accepted, which bounds how many bytes a
/// stream holds back.
pub const LITERAL_MAX: usize = 4096;

/// One byte string the literal searcher looks for.
#[derive(Debug, Clone)]
pub struct Form {
    /// Rule the form belongs to (index into the rule names).
    pub rule: usize,
    /// Bytes to find.
    pub needle: Vec<u8>,
    /// Bytes that replace the needle under length-keeping masking.
    pub masked: Vec<u8>,
    /// How the value is encoded in this form.
    pub encoding: Encoding,
}

/// Returns the forms of a known secret value: the value itself, its
/// percent-encoded form (upper- and lower-case hex), and the part of its
/// base64 encoding that does not depend on the neighbouring bytes, at each
/// of the three alignments and in both alphabets.
pub fn known_secret_forms(rule: usize, value: &[u8]) -> Vec<Form> {
    let mut forms = vec![Form {
        rule,
        needle: value.to_vec(),
        masked: vec![b'*'; value.len()],
        encoding: Encoding::Plain,
    }];
    for upper in [true, false] {
        let encoded = percent_encode(value, upper);
        if encoded != value {
            forms.push(Form {
                rule,
                masked: vec![b'*'; encoded.len()],
                needle: encoded,
                encoding: Encoding::Percent,
            });
        }
    }
    let stars = vec![b'*'; value.len()];
    for align in 0..3 {
        let (start, text) = determined_chars(value, align);
        let (star_start, star_text) = determined_chars(&stars, align);
        // The stars' encoding has fixed characters where the value's has
        // them; if not (never seen), skip the form rather than mis-mask.
        if text.len() < KNOWN_SECRET_MIN || star_start != start || star_text.len() < text.len() {
            continue;
        }
        let masked = star_text.as_bytes()[..text.len()].to_vec();
        forms.push(Form {
            rule,
            needle: text.clone().into_bytes(),
            masked: masked.clone(),
            encoding: Encoding::Base64,
        });
        let url = to_url_safe(text.as_bytes());
        if url != text.as_bytes() {
            forms.push(Form {
                rule,
                needle: url,
                masked: to_url_safe(&masked),
                encoding: Encoding::Base64Url,
            });
        }
    }
    forms.retain(|f| !f.needle.is_empty());
    forms
}

fn to_url_safe(text: &[u8]) -> Vec<u8> {
    text.iter()
        .map(|&b| match b {
            b'+' => b'-',
            b'/' => b'_',
            b => b,
        })
        .collect()
}

/// Percent-encodes every byte outside the URL unreserved set.
pub fn percent_encode(value: &[u8], upper: bool) -> Vec<u8> {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut out = Vec::with_capacity(value.len());
    for &b in value {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', digits[(b >> 4) as usize], digits[(b & 15) as usize]]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    #[test]
    fn base64_forms_found_in_encodings() {
        let value = b"hunter2-is-not-a-good-password";
        let forms = known_secret_forms(0, value);
        for lead in ["", "a", "ab"] {
            let mut plain = lead.as_bytes().to_vec();
            plain.extend_from_slice(value);
            plain.extend_from_slice(b"!");
            let encoded = base64::engine::general_purpose::STANDARD.encode(&plain);
            let hit = forms.iter().find(|f| {
                f.encoding == Encoding::Base64
                    && encoded.contains(std::str::from_utf8(&f.needle).unwrap())
            });
            assert!(hit.is_some(), "lead {lead:?}: {encoded}");
        }
    }

    #[test]
    fn masked_base64_decodes_to_stars() {
        let value = b"0123456789abcdef0123";
        let forms = known_secret_forms(0, value);
        let mut plain = b"x".to_vec();
        plain.extend_from_slice(value);
        plain.extend_from_slice(b"yz");
        let encoded = base64::engine::general_purpose::STANDARD.encode(&plain);
        let form = forms
            .iter()
            .find(|f| {
                f.encoding == Encoding::Base64
                    && encoded.contains(std::str::from_utf8(&f.needle).unwrap())
            })
            .unwrap();
        let masked = encoded.replace(
            std::str::from_utf8(&form.needle).unwrap(),
            std::str::from_utf8(&form.masked).unwrap(),
        );
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(masked)
            .unwrap();
        assert_eq!(&decoded[..1], b"x");
        assert_eq!(&decoded[decoded.len() - 2..], b"yz");
        // Bits of the first and last secret bytes share characters with the
        // neighbours and stay; every byte in between is a star.
        assert!(decoded[2..decoded.len() - 3].iter().all(|&b| b == b'*'));
    }

    #[test]
    fn percent_form_only_when_different() {
        let forms = known_secret_forms(0, b"plainvalue123");
        assert!(forms.iter().all(|f| f.encoding != Encoding::Percent));
        let forms = known_secret_forms(0, b"a/b+c=d secret");
        assert!(forms.iter().any(|f| f.needle == b"a%2Fb%2Bc%3Dd%20secret"));
        assert!(forms.iter().any(|f| f.needle == b"a%2fb%2bc%3dd%20secret"));
    }
}
