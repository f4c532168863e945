//! The streaming redaction engine.
//!
//! A [`Redactor`] contains the compiled rules and the masking policy; it is
//! built once and shared (cloning is cheap). Each byte stream gets a
//! [`Stream`], which takes input in chunks of any size and produces output
//! that does not depend on how the input was cut. See [`Stream`] for the
//! buffer discipline and the memory bound.

mod policy;
mod stream;

#[cfg(test)]
mod tests;

use std::cell::Cell;
use std::sync::Arc;

pub use policy::{FingerprintKey, Policy, MASK};
pub use stream::{Stream, DEFAULT_CAPACITY};

use crate::detect::{BuiltinOptions, Encoding, RuleError, Rules, RulesBuilder};

/// A secret that was masked. It never contains secret bytes: only the rule,
/// where the secret was, and the public token identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Name of the rule that matched.
    pub rule: Arc<str>,
    /// Encoding of the secret.
    pub encoding: Encoding,
    /// Byte offset of the first rewritten byte in the input stream.
    pub offset: u64,
    /// Number of input bytes rewritten.
    pub len: u64,
    /// The token identifier (`dt0c01.<public part>`), when the token has
    /// one and the policy shows it in the output.
    pub token_id: Option<String>,
}

/// Errors from building a [`Redactor`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A rule is invalid.
    #[error(transparent)]
    Rule(#[from] RuleError),
}

/// Compiled rules plus a masking policy. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Redactor {
    rules: Rules,
    policy: Policy,
}

/// Builds a [`Redactor`].
#[derive(Debug, Clone)]
pub struct RedactorBuilder {
    rules: RulesBuilder,
    policy: Policy,
}

impl RedactorBuilder {
    /// Sets the masking policy (default: [`Policy::KeepId`]).
    pub fn policy(&mut self, policy: Policy) -> &mut Self {
        self.policy = policy;
        self
    }

    /// Sets which built-in detections run.
    pub fn builtin(&mut self, options: BuiltinOptions) -> &mut Self {
        self.rules.builtin(options);
        self
    }

    /// Adds a literal rule.
    pub fn literal(&mut self, name: &str, literal: &[u8]) -> &mut Self {
        self.rules.literal(name, literal);
        self
    }

    /// Adds a known secret value (masked in plain, percent-encoded and
    /// base64 forms).
    pub fn known_secret(&mut self, name: &str, value: &[u8]) -> &mut Self {
        self.rules.known_secret(name, value);
        self
    }

    /// Adds a regex rule with an optional match length bound in bytes.
    pub fn regex(&mut self, name: &str, pattern: &str, max_len: Option<usize>) -> &mut Self {
        self.rules.regex(name, pattern, max_len);
        self
    }

    /// Compiles the rules.
    ///
    /// # Errors
    ///
    /// Any rule error; see [`RuleError`].
    pub fn build(&self) -> Result<Redactor, BuildError> {
        Ok(Redactor {
            rules: self.rules.build()?,
            policy: self.policy.clone(),
        })
    }
}

/// Short inputs gathered for one candidate search, made by
/// [`Redactor::candidate_check`].
pub struct CandidateCheck<'r> {
    redactor: &'r Redactor,
    /// The inputs joined by newlines, in a buffer kept by the thread, so
    /// that a check (one per request head) neither allocates nor clears
    /// a buffer of its own.
    joined: Vec<u8>,
    /// Inputs are searched one by one, because there are regex rules.
    one_by_one: bool,
    /// A regex rule found a candidate in an input on its own.
    found: bool,
}

thread_local! {
    /// The buffer of the thread's last finished [`CandidateCheck`].
    static JOINED: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// A joined buffer larger than this is dropped instead of kept for the
/// next check, so one huge request head does not pin memory.
const JOINED_KEEP: usize = 64 * 1024;

impl CandidateCheck<'_> {
    /// Adds an input.
    pub fn add(&mut self, input: &[u8]) {
        // Regex rules may be anchored, so they see each input alone.
        if self.one_by_one {
            self.found = self.found || self.redactor.has_candidate(input);
            return;
        }
        // Literals found in the inputs are found in their concatenation.
        self.joined.extend_from_slice(input);
        self.joined.push(b'\n');
    }

    /// Returns whether any input added may contain a candidate.
    pub fn finish(self) -> bool {
        self.found || self.redactor.has_candidate(&self.joined)
    }
}

impl Drop for CandidateCheck<'_> {
    fn drop(&mut self) {
        if self.joined.capacity() <= JOINED_KEEP {
            let mut joined = std::mem::take(&mut self.joined);
            joined.clear();
            JOINED.set(joined);
        }
    }
}

impl Default for Redactor {
    fn default() -> Self {
        Redactor {
            rules: Rules::builtin(),
            policy: Policy::KeepId,
        }
    }
}

impl Redactor {
    /// Returns a builder with the built-in rules and the `keep-id` policy.
    pub fn builder() -> RedactorBuilder {
        RedactorBuilder {
            rules: RulesBuilder::default(),
            policy: Policy::KeepId,
        }
    }

    /// Returns the compiled rules.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Returns the masking policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Returns a redactor with the same rules and another policy.
    pub fn with_policy(&self, policy: Policy) -> Redactor {
        Redactor {
            rules: self.rules.clone(),
            policy,
        }
    }

    /// Starts a stream with the default buffer capacity.
    pub fn stream(&self) -> Stream {
        Stream::new(self.clone(), DEFAULT_CAPACITY)
    }

    /// Starts a stream whose buffer takes `capacity` bytes of input at a
    /// time (at least 4 KiB more than the rules' window is used).
    pub fn stream_with_capacity(&self, capacity: usize) -> Stream {
        Stream::new(self.clone(), capacity)
    }

    /// Returns whether any searcher finds a candidate in `input`. When it
    /// does not, redacting `input` as a whole stream changes nothing.
    pub fn has_candidate(&self, input: &[u8]) -> bool {
        self.rules
            .searchers()
            .any(|s| self.rules.next_candidate(s, input, 0).is_some())
    }

    /// Returns whether any of `inputs`, each taken on its own, may contain
    /// a candidate. It finds every candidate [`Redactor::has_candidate`]
    /// finds in an input. It may also report one that no input contains (a
    /// literal across two inputs), so callers check each input after a yes.
    ///
    /// Checking many short inputs (header values) this way costs one
    /// search instead of one per input.
    pub fn has_candidate_in_any<'a, I>(&self, inputs: I) -> bool
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let mut check = self.candidate_check();
        for input in inputs {
            check.add(input);
        }
        check.finish()
    }

    /// Starts a check of many short inputs in one search. It backs
    /// [`Redactor::has_candidate_in_any`].
    pub fn candidate_check(&self) -> CandidateCheck<'_> {
        CandidateCheck {
            redactor: self,
            joined: JOINED.take(),
            one_by_one: self.rules.has_regexes(),
            found: false,
        }
    }

    /// Returns whether `other` uses the same compiled rules (not an equal
    /// copy) and an equal policy, so that output made with one is the
    /// output of the other.
    pub fn is_same(&self, other: &Redactor) -> bool {
        self.rules.is_same(&other.rules) && self.policy == other.policy
    }

    /// Redacts a whole input at once and returns the output and findings.
    pub fn redact_all(&self, input: &[u8]) -> (Vec<u8>, Vec<Finding>) {
        // Most header values and short inputs hold no candidate: skip the
        // stream and its buffer.
        if !self.has_candidate(input) {
            return (input.to_vec(), Vec::new());
        }
        let mut stream = self.stream_with_capacity(input.len().max(1));
        let mut out = Vec::with_capacity(input.len());
        stream.push(input, &mut out);
        stream.finish(&mut out);
        let findings = stream.take_findings();
        (out, findings)
    }
}
