//! User regex rules, bounded in match length so that streaming stays
//! bounded.

use regex_automata::meta::Regex;
use regex_automata::{Anchored, Input};

use super::grammar::Check;

/// Largest `max_len` a regex rule may have.
pub const REGEX_MAX_LEN: usize = 64 * 1024;
/// Compiled size limit of one regex, in bytes.
const SIZE_LIMIT: usize = 1 << 20;

/// Errors from compiling a user regex.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegexError {
    /// The pattern does not parse or compile.
    #[error("rule {name:?}: invalid regex: {message}")]
    Invalid {
        /// Rule name.
        name: String,
        /// What the regex parser reported.
        message: String,
    },
    /// The pattern can match an unbounded number of bytes and no `max_len`
    /// was given.
    #[error(
        "rule {name:?}: the regex can match without a length limit; set max_len to the longest match in bytes (at most {REGEX_MAX_LEN})"
    )]
    Unbounded {
        /// Rule name.
        name: String,
    },
    /// `max_len` is zero or above [`REGEX_MAX_LEN`].
    #[error("rule {name:?}: max_len = {max_len} is out of range; use 1 to {REGEX_MAX_LEN}")]
    MaxLen {
        /// Rule name.
        name: String,
        /// Value given.
        max_len: usize,
    },
    /// The pattern matches the empty string, which would mask nothing and
    /// match everywhere.
    #[error("rule {name:?}: the regex matches an empty string; make it match at least one byte")]
    Empty {
        /// Rule name.
        name: String,
    },
}

/// A compiled user regex with its match length bound.
#[derive(Debug)]
pub struct UserRegex {
    pub(crate) rule: usize,
    re: Regex,
    pub(crate) max_len: usize,
}

impl UserRegex {
    /// Compiles `pattern`. The match length bound is the smaller of
    /// `max_len` and the longest match the pattern allows.
    pub fn new(
        name: &str,
        rule: usize,
        pattern: &str,
        max_len: Option<usize>,
    ) -> Result<UserRegex, RegexError> {
        let invalid = |message: String| RegexError::Invalid {
            name: name.to_string(),
            message,
        };
        let hir = regex_syntax::ParserBuilder::new()
            .utf8(false)
            .build()
            .parse(pattern)
            .map_err(|e| invalid(e.to_string()))?;
        let props = hir.properties();
        if props.minimum_len() == Some(0) {
            return Err(RegexError::Empty {
                name: name.to_string(),
            });
        }
        let bound = match (max_len, props.maximum_len()) {
            (Some(m), _) if m == 0 || m > REGEX_MAX_LEN => {
                return Err(RegexError::MaxLen {
                    name: name.to_string(),
                    max_len: m,
                })
            }
            (Some(m), Some(own)) => m.min(own),
            (Some(m), None) => m,
            (None, Some(own)) if own <= REGEX_MAX_LEN => own,
            (None, _) => {
                return Err(RegexError::Unbounded {
                    name: name.to_string(),
                })
            }
        };
        let re = Regex::builder()
            .syntax(regex_automata::util::syntax::Config::new().utf8(false))
            .configure(Regex::config().nfa_size_limit(Some(SIZE_LIMIT)))
            .build(pattern)
            .map_err(|e| invalid(e.to_string()))?;
        Ok(UserRegex {
            rule,
            re,
            max_len: bound,
        })
    }

    /// Finds the leftmost match start at or after `from`.
    pub(crate) fn find(&self, hay: &[u8], from: usize) -> Option<(usize, usize)> {
        let m = self.re.find(Input::new(hay).span(from..hay.len()))?;
        Some((m.start(), m.end()))
    }

    /// Decides the match at `pos`: the regex runs anchored on at most
    /// `max_len` bytes from `pos`, so the outcome does not depend on what
    /// lies further on.
    ///
    /// NOTE: `$` and `\b` at the end of that window see the window's end as
    /// the end of the input.
    pub(crate) fn decide(&self, hay: &[u8], pos: usize, eof: bool) -> Check<usize> {
        let end = pos + self.max_len;
        if end > hay.len() && !eof {
            return Check::NeedMore;
        }
        let end = end.min(hay.len());
        let input = Input::new(&hay[..end])
            .span(pos..end)
            .anchored(Anchored::Yes);
        match self.re.find(input) {
            Some(m) if m.end() > m.start() => Check::Found(m.end()),
            _ => Check::NotFound,
        }
    }
}
