//! What a secret looks like.
//!
//! A [`Rules`] value is the compiled rule set: the built-in Dynatrace rules,
//! known secret values and user rules. It finds candidates with literal
//! prefilters (aho-corasick, which uses its SIMD searcher for these
//! patterns) and checks each candidate by hand-written code, so bytes that
//! hold no candidate cost about one pass of the prefilter. Nothing here
//! does I/O or depends on streams; the engine in [`crate::redact`] calls
//! [`Rules::next_candidate`] and [`Rules::check`] on the bytes it holds.

pub mod base64;
pub mod grammar;
pub mod literal;
pub mod user;

use std::ops::Range;
use std::sync::Arc;

use aho_corasick::{packed, AhoCorasick, AhoCorasickKind, MatchKind};

pub use grammar::{Check, PlainToken, SecretKind};

/// Rule name of complete Dynatrace tokens of every `dt0` type.
pub const RULE_TOKEN: &str = "dynatrace-token";
/// Rule name of secret parts cut short or running long.
pub const RULE_PARTIAL: &str = "dynatrace-partial-secret";
/// Rule name of legacy 21-character tokens after an `Api-Token` context.
pub const RULE_LEGACY: &str = "dynatrace-legacy-token";

/// Encoding of a secret in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Encoding {
    /// As is.
    Plain,
    /// With percent-encoded bytes (`%2E` separators, or a known secret's
    /// percent-encoded form).
    Percent,
    /// Standard base64.
    Base64,
    /// URL-safe base64.
    Base64Url,
    /// Found only by its context (legacy tokens after `Api-Token`).
    Context,
}

impl Encoding {
    /// Every encoding, for metrics that list them all.
    pub const ALL: [Encoding; 5] = [
        Encoding::Plain,
        Encoding::Percent,
        Encoding::Base64,
        Encoding::Base64Url,
        Encoding::Context,
    ];

    /// Name used in findings, summaries and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Plain => "plain",
            Encoding::Percent => "percent",
            Encoding::Base64 => "base64",
            Encoding::Base64Url => "base64url",
            Encoding::Context => "context",
        }
    }
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Meaning of a candidate literal of the built-in searcher.
#[derive(Debug, Clone)]
enum BuiltinKind {
    Plain,
    Legacy,
    Base64(base64::Literal),
}

/// The searcher that a candidate came from. Each has its own scan position
/// in the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Searcher {
    /// The built-in Dynatrace literals.
    Builtin,
    /// Known secrets and literal user rules.
    Literals,
    /// The user regex rule with this index.
    Regex(usize),
}

/// A candidate: where a searcher's literal or regex matched.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    /// Position of the literal or of the regex match start.
    pub pos: usize,
    /// Which pattern matched (meaning depends on the searcher).
    pattern: usize,
    /// End of the match, for literals and regexes.
    end: usize,
}

/// A secret found in the haystack.
#[derive(Debug, Clone)]
pub struct Hit {
    /// Index of the rule in [`Rules::rule_names`].
    pub rule: usize,
    /// Encoding of the secret.
    pub encoding: Encoding,
    /// Haystack bytes the hit rewrites.
    pub span: Range<usize>,
    /// Contents of the span, for masking.
    pub body: HitBody,
}

/// Contents of a hit's span.
#[derive(Debug, Clone)]
pub enum HitBody {
    /// A `dt0` token in plain bytes; its ranges index the haystack.
    Token(PlainToken),
    /// A `dt0` token inside base64.
    Base64(base64::Base64Token),
    /// A secret of which every byte is masked (legacy tokens, user regex
    /// matches).
    Whole,
    /// A literal form; the index is into the literal forms.
    Form(usize),
}

/// Switches for the built-in detections. All are on by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltinOptions {
    /// Mask secret parts cut short or running long.
    pub partial_secrets: bool,
    /// Find tokens inside base64.
    pub base64: bool,
    /// Find legacy tokens after `Api-Token`.
    pub legacy: bool,
}

impl Default for BuiltinOptions {
    fn default() -> Self {
        BuiltinOptions {
            partial_secrets: true,
            base64: true,
            legacy: true,
        }
    }
}

/// The compiled rule set. Cheap to clone; shared by every stream.
#[derive(Debug, Clone)]
pub struct Rules {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    names: Vec<Arc<str>>,
    options: BuiltinOptions,
    builtin: AhoCorasick,
    /// The same patterns in the SIMD searcher alone, where the CPU has one:
    /// it finds the match itself, where the automaton above runs it as a
    /// prefilter and then confirms each hit.
    builtin_packed: Option<packed::Searcher>,
    builtin_kinds: Vec<BuiltinKind>,
    literals: Option<AhoCorasick>,
    forms: Vec<literal::Form>,
    literal_max: usize,
    regexes: Vec<user::UserRegex>,
    window: usize,
}

/// Bytes before a candidate that a check may read or rewrite: a base64
/// group starts up to three characters before its literal, a legacy
/// token's `Api` is three bytes before its candidate `-tok`, and a regex
/// look-behind assertion reads one character (up to four bytes).
pub const LOOKBEHIND: usize = 8;

const _: () = assert!(grammar::LEGACY_LOOKBEHIND <= LOOKBEHIND);

/// Errors from compiling a rule set.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// Two rules share a name.
    #[error("rule name {0:?} is used twice; give each rule its own name")]
    DuplicateName(String),
    /// A rule name is empty or contains characters unfit for a metric label.
    #[error("rule name {0:?} is invalid; use letters, digits, '-', '_', '.' or ':'")]
    InvalidName(String),
    /// A literal is empty or too long.
    #[error("rule {name:?}: literal of {len} bytes is not allowed; it must be 1 to {max} bytes")]
    LiteralLength {
        /// Rule name.
        name: String,
        /// Length given.
        len: usize,
        /// Maximum length.
        max: usize,
    },
    /// A known secret value is too short or too long.
    #[error(
        "known secret {name:?}: value of {len} bytes is not allowed; it must be {min} to {max} bytes"
    )]
    SecretLength {
        /// Rule name.
        name: String,
        /// Length of the value.
        len: usize,
        /// Minimum length.
        min: usize,
        /// Maximum length.
        max: usize,
    },
    /// A user regex failed to compile or has no bounded length.
    #[error(transparent)]
    Regex(#[from] user::RegexError),
    /// The literal searcher failed to build.
    #[error("failed to build the literal searcher: {0}")]
    Searcher(String),
}

/// Collects rules, then compiles them with [`RulesBuilder::build`].
#[derive(Debug, Default, Clone)]
pub struct RulesBuilder {
    options: BuiltinOptions,
    literals: Vec<(String, Vec<u8>)>,
    secrets: Vec<(String, Vec<u8>)>,
    regexes: Vec<(String, String, Option<usize>)>,
}

impl RulesBuilder {
    /// Sets which built-in detections run.
    pub fn builtin(&mut self, options: BuiltinOptions) -> &mut Self {
        self.options = options;
        self
    }

    /// Adds a literal rule: every occurrence of `literal` is masked.
    pub fn literal(&mut self, name: &str, literal: &[u8]) -> &mut Self {
        self.literals.push((name.to_string(), literal.to_vec()));
        self
    }

    /// Adds a known secret value: the value, its percent-encoded form and
    /// its base64 forms are masked wherever they appear.
    pub fn known_secret(&mut self, name: &str, value: &[u8]) -> &mut Self {
        self.secrets.push((name.to_string(), value.to_vec()));
        self
    }

    /// Adds a regex rule. `max_len` bounds a match in bytes; it may be
    /// omitted only when the pattern itself bounds its match length.
    pub fn regex(&mut self, name: &str, pattern: &str, max_len: Option<usize>) -> &mut Self {
        self.regexes
            .push((name.to_string(), pattern.to_string(), max_len));
        self
    }

    /// Compiles the rule set.
    ///
    /// # Errors
    ///
    /// A duplicate or invalid rule name, a literal or secret of a length
    /// outside its limits, or a regex that is invalid or unbounded.
    pub fn build(&self) -> Result<Rules, RuleError> {
        let mut names: Vec<Arc<str>> =
            vec![RULE_TOKEN.into(), RULE_PARTIAL.into(), RULE_LEGACY.into()];
        let mut add_name = |name: &str| -> Result<usize, RuleError> {
            let valid = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
            if !valid {
                return Err(RuleError::InvalidName(name.to_string()));
            }
            if names.iter().any(|n| &**n == name) {
                return Err(RuleError::DuplicateName(name.to_string()));
            }
            names.push(name.into());
            Ok(names.len() - 1)
        };

        let mut forms = Vec::new();
        for (name, lit) in &self.literals {
            if lit.is_empty() || lit.len() > literal::LITERAL_MAX {
                return Err(RuleError::LiteralLength {
                    name: name.clone(),
                    len: lit.len(),
                    max: literal::LITERAL_MAX,
                });
            }
            let rule = add_name(name)?;
            forms.push(literal::Form {
                rule,
                needle: lit.clone(),
                masked: vec![b'*'; lit.len()],
                encoding: Encoding::Plain,
            });
        }
        for (name, value) in &self.secrets {
            let range = literal::KNOWN_SECRET_MIN..=literal::LITERAL_MAX;
            if !range.contains(&value.len()) {
                return Err(RuleError::SecretLength {
                    name: name.clone(),
                    len: value.len(),
                    min: literal::KNOWN_SECRET_MIN,
                    max: literal::LITERAL_MAX,
                });
            }
            let rule = add_name(name)?;
            forms.extend(literal::known_secret_forms(rule, value));
        }
        let mut regexes = Vec::new();
        for (name, pattern, max_len) in &self.regexes {
            let rule = add_name(name)?;
            regexes.push(user::UserRegex::new(name, rule, pattern, *max_len)?);
        }

        let (builtin, builtin_packed, builtin_kinds) = builtin_searcher(self.options)?;
        let literal_max = forms.iter().map(|f| f.needle.len()).max().unwrap_or(0);
        let literals = if forms.is_empty() {
            None
        } else {
            let ac = AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(forms.iter().map(|f| &f.needle))
                .map_err(|e| RuleError::Searcher(e.to_string()))?;
            Some(ac)
        };
        let window = [
            grammar::PLAIN_WINDOW,
            base64::WINDOW + LOOKBEHIND,
            grammar::LEGACY_WINDOW,
            literal_max,
        ]
        .into_iter()
        .chain(regexes.iter().map(|r| r.max_len + 1))
        .max()
        .unwrap_or(0);
        Ok(Rules {
            inner: Arc::new(Inner {
                names,
                options: self.options,
                builtin,
                builtin_packed,
                builtin_kinds,
                literals,
                forms,
                literal_max,
                regexes,
                window,
            }),
        })
    }
}

/// The built-in searcher, its packed form and the kind of each pattern.
type BuiltinSearcher = (AhoCorasick, Option<packed::Searcher>, Vec<BuiltinKind>);

fn builtin_searcher(options: BuiltinOptions) -> Result<BuiltinSearcher, RuleError> {
    // Case variants are listed as patterns, because aho-corasick's SIMD
    // searcher is not used with ascii_case_insensitive.
    let mut patterns: Vec<Vec<u8>> = Vec::new();
    let mut kinds = Vec::new();
    for v in case_variants(b"dt") {
        let mut p = v;
        p.push(b'0');
        patterns.push(p);
        kinds.push(BuiltinKind::Plain);
    }
    if options.legacy {
        for v in case_variants(b"tok") {
            let mut p = vec![b'-'];
            p.extend_from_slice(&v);
            patterns.push(p);
            kinds.push(BuiltinKind::Legacy);
        }
    }
    if options.base64 {
        for lit in base64::literals() {
            patterns.push(lit.text.clone().into_bytes());
            kinds.push(BuiltinKind::Base64(lit));
        }
    }
    let ac = AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostFirst)
        .kind(Some(AhoCorasickKind::DFA))
        .build(&patterns)
        .map_err(|e| RuleError::Searcher(e.to_string()))?;
    let packed = packed::Config::new()
        .match_kind(packed::MatchKind::LeftmostFirst)
        .builder()
        .extend(&patterns)
        .build();
    Ok((ac, packed, kinds))
}

/// Returns every upper/lower-case spelling of an ASCII word.
fn case_variants(word: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![Vec::new()];
    for &b in word {
        let lower = b.to_ascii_lowercase();
        let upper = b.to_ascii_uppercase();
        let mut next = Vec::with_capacity(out.len() * 2);
        for prefix in &out {
            for c in [lower, upper] {
                let mut p: Vec<u8> = prefix.clone();
                p.push(c);
                next.push(p);
            }
        }
        out = next;
    }
    out
}

impl Rules {
    /// Returns a builder for a rule set.
    pub fn builder() -> RulesBuilder {
        RulesBuilder::default()
    }

    /// Returns the built-in rules only, with default options.
    pub fn builtin() -> Rules {
        RulesBuilder::default()
            .build()
            .expect("built-in rules always compile")
    }

    /// Rule names, indexed by [`Hit::rule`]. The built-in rules come first.
    pub fn rule_names(&self) -> &[Arc<str>] {
        &self.inner.names
    }

    /// Returns the searchers this rule set runs.
    pub fn searchers(&self) -> impl Iterator<Item = Searcher> + '_ {
        let literals = self.inner.literals.is_some().then_some(Searcher::Literals);
        std::iter::once(Searcher::Builtin)
            .chain(literals)
            .chain((0..self.inner.regexes.len()).map(Searcher::Regex))
    }

    /// Returns whether there are user regex rules.
    pub fn has_regexes(&self) -> bool {
        !self.inner.regexes.is_empty()
    }

    /// Returns whether `other` is these compiled rules, not a copy.
    pub fn is_same(&self, other: &Rules) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Bytes a check may read from its candidate's position, lookahead
    /// included. A stream never holds back more than this plus
    /// [`LOOKBEHIND`] while it waits for a candidate to be decided.
    pub fn window(&self) -> usize {
        self.inner.window
    }

    /// Returns the literal form with index `i`, for a [`HitBody::Form`].
    pub fn form(&self, i: usize) -> &literal::Form {
        &self.inner.forms[i]
    }

    /// Finds the first candidate of `searcher` starting at or after `from`.
    ///
    /// For literal searchers, a literal that may start before `hay.len()`
    /// but is not yet complete is not reported; the caller keeps the last
    /// [`Rules::pending_tail`] bytes for the next call.
    pub fn next_candidate(&self, searcher: Searcher, hay: &[u8], from: usize) -> Option<Candidate> {
        if from >= hay.len() {
            return None;
        }
        let input = aho_corasick::Input::new(hay).span(from..hay.len());
        let m = match searcher {
            Searcher::Builtin => match &self.inner.builtin_packed {
                Some(packed) => packed.find_in(hay, input.get_span()),
                None => self.inner.builtin.find(input),
            },
            Searcher::Literals => self.inner.literals.as_ref()?.find(input),
            Searcher::Regex(i) => {
                let (start, end) = self.inner.regexes[i].find(hay, from)?;
                return Some(Candidate {
                    pos: start,
                    pattern: 0,
                    end,
                });
            }
        }?;
        Some(Candidate {
            pos: m.start(),
            pattern: m.pattern().as_usize(),
            end: m.end(),
        })
    }

    /// Bytes at the end of a haystack in which a searcher may see a match
    /// that is not complete yet.
    pub fn pending_tail(&self, searcher: Searcher) -> usize {
        match searcher {
            Searcher::Builtin => 4,
            Searcher::Literals => self.inner.literal_max,
            Searcher::Regex(i) => self.inner.regexes[i].max_len,
        }
    }

    /// Decides a candidate. `eof` is true when the haystack ends where the
    /// stream ends.
    pub fn check(&self, searcher: Searcher, hay: &[u8], c: Candidate, eof: bool) -> Check<Hit> {
        match searcher {
            Searcher::Builtin => self.check_builtin(hay, c, eof),
            Searcher::Literals => {
                // A longer form could still match at the same position.
                if !eof && c.pos + self.inner.literal_max > hay.len() {
                    return Check::NeedMore;
                }
                let form = &self.inner.forms[c.pattern];
                Check::Found(Hit {
                    rule: form.rule,
                    encoding: form.encoding,
                    span: c.pos..c.end,
                    body: HitBody::Form(c.pattern),
                })
            }
            Searcher::Regex(i) => match self.inner.regexes[i].decide(hay, c.pos, eof) {
                Check::Found(end) => Check::Found(Hit {
                    rule: self.inner.regexes[i].rule,
                    encoding: Encoding::Plain,
                    span: c.pos..end,
                    body: HitBody::Whole,
                }),
                Check::NotFound => Check::NotFound,
                Check::NeedMore => Check::NeedMore,
            },
        }
    }

    fn check_builtin(&self, hay: &[u8], c: Candidate, eof: bool) -> Check<Hit> {
        let partial_ok = self.inner.options.partial_secrets;
        let rule_of = |t: &PlainToken| match t.kind {
            SecretKind::Full => Some(0),
            SecretKind::Partial if partial_ok => Some(1),
            SecretKind::Partial => None,
        };
        match &self.inner.builtin_kinds[c.pattern] {
            BuiltinKind::Plain => match grammar::check_plain(hay, c.pos, eof) {
                Check::Found(t) => {
                    let Some(rule) = rule_of(&t) else {
                        return Check::NotFound;
                    };
                    Check::Found(Hit {
                        rule,
                        encoding: if t.percent {
                            Encoding::Percent
                        } else {
                            Encoding::Plain
                        },
                        span: t.span.clone(),
                        body: HitBody::Token(t),
                    })
                }
                Check::NotFound => Check::NotFound,
                Check::NeedMore => Check::NeedMore,
            },
            BuiltinKind::Legacy => match grammar::check_legacy(hay, c.pos, eof) {
                Check::Found(span) => Check::Found(Hit {
                    rule: 2,
                    encoding: Encoding::Context,
                    span,
                    body: HitBody::Whole,
                }),
                Check::NotFound => Check::NotFound,
                Check::NeedMore => Check::NeedMore,
            },
            BuiltinKind::Base64(lit) => match base64::check(hay, c.pos, lit, eof) {
                Check::Found(t) => {
                    let Some(rule) = rule_of(&t.token) else {
                        return Check::NotFound;
                    };
                    Check::Found(Hit {
                        rule,
                        encoding: if t.url_safe {
                            Encoding::Base64Url
                        } else {
                            Encoding::Base64
                        },
                        span: t.span.clone(),
                        body: HitBody::Base64(t),
                    })
                }
                Check::NotFound => Check::NotFound,
                Check::NeedMore => Check::NeedMore,
            },
        }
    }

    /// Returns the first position at or after `from` where a literal form
    /// starts but is cut off by the end of `hay`. The literal searcher does
    /// not report such a form yet, and an idle flush must not release its
    /// first bytes.
    pub fn partial_literal_start(&self, hay: &[u8], from: usize) -> Option<usize> {
        let lo = hay
            .len()
            .saturating_sub(self.inner.literal_max.saturating_sub(1))
            .max(from);
        (lo..hay.len()).find(|&start| {
            let tail = &hay[start..];
            self.inner
                .forms
                .iter()
                .any(|f| f.needle.len() > tail.len() && f.needle.starts_with(tail))
        })
    }

    /// For an undecided candidate, returns the position from which the
    /// available bytes may be secret, so that an idle flush can mask them.
    /// `None` means none of them can be.
    pub fn provisional_mask_start(
        &self,
        searcher: Searcher,
        hay: &[u8],
        c: Candidate,
    ) -> Option<usize> {
        match searcher {
            Searcher::Builtin => match &self.inner.builtin_kinds[c.pattern] {
                BuiltinKind::Plain => grammar::plain_secret_start(hay, c.pos),
                // The 21 bytes after `Api-Token` and a separator.
                BuiltinKind::Legacy => Some(c.pos + 7),
                BuiltinKind::Base64(_) => Some(c.pos),
            },
            Searcher::Literals | Searcher::Regex(_) => Some(c.pos),
        }
    }
}

#[cfg(test)]
mod tests;
