//! The TOML configuration: types, defaults, validation, and building a
//! [`Redactor`] from it.
//!
//! [`Config::load`] reads and checks a file without touching the secrets it
//! points at, so that a syntax or rule error shows at once.
//! [`Config::build_redactor`] then reads the known-secret files and the
//! fingerprint key and compiles the rules. Every key is optional; the
//! defaults are the constants below and the values in `config/dtredact.toml`.
//!
//! Errors name the config file, the line and column, the dotted key (such
//! as `rules[2].regex`), the offending value where it is not secret, and
//! what to change. They never contain a known-secret value, a literal
//! rule's value or the fingerprint key.

use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::detect::literal::{KNOWN_SECRET_MIN, LITERAL_MAX};
use crate::detect::user::{RegexError, UserRegex, REGEX_MAX_LEN};
use crate::detect::{BuiltinOptions, RuleError, RULE_LEGACY, RULE_PARTIAL, RULE_TOKEN};
use crate::redact::{BuildError, FingerprintKey, Policy};
use crate::Redactor;

mod service;

pub use service::{
    parse_upstream, AdminConfig, CredentialScheme, LogConfig, LogFormat, ProxyConfig,
    UpstreamUrlError, CONCURRENT_REQUESTS_MAX, DEFAULT_LOG_FILTER, DEFAULT_MAX_LEAK_IDS,
    DEFAULT_PROXY_LISTEN, TIME_LIMIT_MAX,
};

/// Default environment variable that contains the fingerprint HMAC key.
pub const DEFAULT_FINGERPRINT_KEY_ENV: &str = "DTREDACT_FINGERPRINT_KEY";
/// Default time a stream may sit idle before held-back bytes are flushed.
pub const DEFAULT_IDLE_FLUSH: Duration = Duration::from_millis(100);
/// Default bytes per read.
pub const DEFAULT_READ_BUFFER: usize = 256 * 1024;
/// Smallest `filter.read_buffer`, in bytes.
pub const READ_BUFFER_MIN: usize = 4096;
/// Largest `filter.read_buffer`, in bytes (16 MiB).
pub const READ_BUFFER_MAX: usize = 16 * 1024 * 1024;
/// Maximum rule name length, in bytes. The rule set in [`crate::detect`] rejects
/// longer names with the same limit.
pub const RULE_NAME_MAX: usize = 64;

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// The `[redact]` table: policy and built-in detections.
    pub redact: RedactConfig,
    /// The `[filter]` table: stream settings of the front ends.
    pub filter: FilterConfig,
    /// The `[[rules]]` array: user literal and regex rules.
    pub rules: Vec<RuleConfig>,
    /// The `[[known_secrets]]` array: secret values read from files.
    pub known_secrets: Vec<KnownSecretConfig>,
    /// The `[proxy]` table: settings of `dtredact proxy`.
    pub proxy: ProxyConfig,
    /// The `[admin]` table: the admin HTTP server.
    pub admin: AdminConfig,
    /// The `[log]` table: dtredact's own diagnostic log.
    pub log: LogConfig,
}

/// The `[redact]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedactConfig {
    /// Masking policy (default `keep-id`).
    pub policy: PolicyName,
    /// Environment variable that contains the fingerprint HMAC key, read only
    /// when the policy is `fingerprint` and no key file is set.
    pub fingerprint_key_env: String,
    /// File that contains the fingerprint HMAC key (one trailing newline is
    /// trimmed). When set, it takes precedence over the environment
    /// variable. A relative path in a config file is resolved against the
    /// file's directory.
    pub fingerprint_key_file: Option<PathBuf>,
    /// Mask secret parts that are cut short or run long (rule
    /// `dynatrace-partial-secret`).
    pub partial_secrets: bool,
    /// Find tokens inside base64.
    pub base64: bool,
    /// Find 21-character legacy tokens after `Api-Token`.
    pub legacy_tokens: bool,
}

impl Default for RedactConfig {
    fn default() -> Self {
        RedactConfig {
            policy: PolicyName::KeepId,
            fingerprint_key_env: DEFAULT_FINGERPRINT_KEY_ENV.to_string(),
            fingerprint_key_file: None,
            partial_secrets: true,
            base64: true,
            legacy_tokens: true,
        }
    }
}

/// The `[filter]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterConfig {
    /// Time a stream may sit idle before bytes held back for an undecided
    /// match are flushed. Zero disables idle flushing.
    pub idle_flush: Duration,
    /// Bytes per read, [`READ_BUFFER_MIN`] to [`READ_BUFFER_MAX`].
    pub read_buffer: usize,
}

impl Default for FilterConfig {
    fn default() -> Self {
        FilterConfig {
            idle_flush: DEFAULT_IDLE_FLUSH,
            read_buffer: DEFAULT_READ_BUFFER,
        }
    }
}

/// One `[[rules]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleConfig {
    /// Rule name in findings and metric labels.
    pub name: String,
    /// Literal or regex to match.
    pub pattern: RulePattern,
}

/// Pattern of a user rule: the `literal` key, or the `regex` and `max_len`
/// keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RulePattern {
    /// Every occurrence of these bytes is masked.
    Literal(String),
    /// Every match of this regex (regex crate syntax on bytes, without a
    /// UTF-8 requirement) is masked.
    Regex {
        /// The pattern.
        regex: String,
        /// Maximum match length in bytes. Required when the pattern does
        /// not bound its own match length.
        max_len: Option<usize>,
    },
}

/// One `[[known_secrets]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownSecretConfig {
    /// Rule name in findings and metric labels. Values from a directory
    /// are named `<name>:<file name>`.
    pub name: String,
    /// A file that contains one value, or a directory in which every regular
    /// file contains one value. A relative path in a config file is resolved
    /// against the file's directory.
    pub path: PathBuf,
}

/// Name of a masking policy, as written in the config and on the command
/// line. [`Config::build_redactor`] turns it into a [`Policy`].
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyName {
    /// Mask the secret part and keep the token identifier.
    #[default]
    KeepId,
    /// Mask every byte of the token.
    Full,
    /// Replace the token with `[REDACTED:<rule>]`, which changes the length.
    Placeholder,
    /// Replace the secret part with a keyed HMAC fingerprint.
    Fingerprint,
}

impl PolicyName {
    /// Every policy, in the order the docs list them.
    pub const ALL: [PolicyName; 4] = [
        PolicyName::KeepId,
        PolicyName::Full,
        PolicyName::Placeholder,
        PolicyName::Fingerprint,
    ];

    /// Returns the name used in the config and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyName::KeepId => "keep-id",
            PolicyName::Full => "full",
            PolicyName::Placeholder => "placeholder",
            PolicyName::Fingerprint => "fingerprint",
        }
    }
}

impl fmt::Display for PolicyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error from parsing an unknown policy name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown policy {0:?}; use one of {list}", list = policy_list())]
pub struct ParsePolicyError(pub String);

impl FromStr for PolicyName {
    type Err = ParsePolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PolicyName::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| ParsePolicyError(s.to_string()))
    }
}

fn policy_list() -> String {
    let names: Vec<&str> = PolicyName::ALL.iter().map(|p| p.as_str()).collect();
    names.join(", ")
}

/// A position in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The config file.
    pub file: PathBuf,
    /// Line, counted from 1.
    pub line: usize,
    /// Column in characters, counted from 1.
    pub column: usize,
    /// Dotted key path such as `filter.read_buffer` or `rules[2].regex`;
    /// empty where no key applies, as for a syntax error.
    pub key: String,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        Ok(())
    }
}

/// Errors from loading a config or building a redactor from it.
///
/// Messages name the place (file, line, column and key, or the config
/// entry such as `known_secrets[0] ("dt-ingest-token")`), what is wrong
/// and what to do. The cause is part of the message, so no variant has a
/// `source()`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("failed to read config file {}: {error}; {hint}", path.display(), hint = read_hint(error))]
    Read {
        /// The config file.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// The file is not valid TOML.
    #[error("{at}: invalid TOML: {message}; fix the syntax at this line and column")]
    Syntax {
        /// Position at which the parser stopped.
        at: Box<Location>,
        /// Message of the TOML parser.
        message: String,
    },
    /// A key that the schema does not have.
    #[error(
        "{at}: unknown key {key:?}; valid keys here: {expected}; fix its spelling or remove it"
    )]
    UnknownKey {
        /// Position of the key.
        at: Box<Location>,
        /// The unknown key.
        key: String,
        /// The keys the table accepts.
        expected: String,
    },
    /// A value of the wrong type.
    #[error("{at}: {message}; change the value to the expected type (config/dtredact.toml documents each key)")]
    InvalidType {
        /// Position of the value.
        at: Box<Location>,
        /// Message of the deserializer.
        message: String,
    },
    /// `redact.policy` names no policy.
    #[error("{at}: unknown policy {value:?}; use one of {list}", list = policy_list())]
    InvalidPolicy {
        /// Position of the value.
        at: Box<Location>,
        /// The value given.
        value: String,
    },
    /// `filter.idle_flush` is not a duration.
    #[error("{at}: invalid duration {value:?}: {message}; write a number with a unit, such as \"100ms\" or \"2s\", or \"0s\" to disable idle flushing")]
    InvalidDuration {
        /// Position of the value.
        at: Box<Location>,
        /// The value given.
        value: String,
        /// Message of the duration parser.
        message: String,
    },
    /// `filter.read_buffer` is out of range.
    #[error("{at}: read buffer of {value} bytes is out of range; use {READ_BUFFER_MIN} to {READ_BUFFER_MAX} bytes")]
    ReadBufferRange {
        /// Position of the value.
        at: Box<Location>,
        /// The value given.
        value: i64,
    },
    /// A string key that must not be empty is empty.
    #[error("{at}: the value is empty; {hint}")]
    EmptyValue {
        /// Position of the value.
        at: Box<Location>,
        /// Suggested fix.
        hint: &'static str,
    },
    /// A required key is missing from a table.
    #[error("{at}: missing key {key:?}; {hint}")]
    MissingKey {
        /// Start of the table.
        at: Box<Location>,
        /// The missing key.
        key: &'static str,
        /// Suggested fix.
        hint: &'static str,
    },
    /// A rule has both `literal` and `regex`, or neither.
    #[error("{at}: rule {name:?} {problem}; give each rule exactly one of `literal` or `regex`")]
    RulePattern {
        /// Start of the rule's table.
        at: Box<Location>,
        /// Rule name.
        name: String,
        /// `has both ...` or `has neither ...`.
        problem: &'static str,
    },
    /// `max_len` on a literal rule.
    #[error("{at}: rule {name:?} is a literal rule, and max_len applies only to regex rules; remove max_len")]
    MaxLenOnLiteral {
        /// Position of `max_len`.
        at: Box<Location>,
        /// Rule name.
        name: String,
    },
    /// A rule name that is empty, too long or contains characters unfit for a
    /// metric label.
    #[error("{at}: rule name {name:?} is invalid; use 1 to {RULE_NAME_MAX} letters, digits, '-', '_', '.' or ':'")]
    InvalidRuleName {
        /// Position of the name.
        at: Box<Location>,
        /// The name given.
        name: String,
    },
    /// Two rules share a name, or a rule takes a built-in rule's name.
    #[error("{at}: rule name {name:?} is already used by {first}; give each rule its own name")]
    DuplicateRuleName {
        /// Position of the second use.
        at: Box<Location>,
        /// The name.
        name: String,
        /// The first use: a config key or `a built-in rule`.
        first: String,
    },
    /// A literal rule is empty or too long. The literal is not shown.
    #[error("{at}: rule {name:?}: literal of {len} bytes is out of range; use 1 to {max} bytes")]
    LiteralLength {
        /// Position of the literal.
        at: Box<Location>,
        /// Rule name.
        name: String,
        /// Length given.
        len: usize,
        /// Maximum length.
        max: usize,
    },
    /// A regex that does not parse or compile.
    #[error("{at}: rule {name:?}: invalid regex {regex:?}: {message}; fix the pattern (regex crate syntax)")]
    InvalidRegex {
        /// Position of the pattern.
        at: Box<Location>,
        /// Rule name.
        name: String,
        /// The pattern.
        regex: String,
        /// Message of the regex parser.
        message: String,
    },
    /// A regex without a length bound and without `max_len`.
    #[error("{at}: rule {name:?}: regex {regex:?} can match an unbounded number of bytes; add max_len = <longest match in bytes> (at most {REGEX_MAX_LEN}) to the rule")]
    UnboundedRegex {
        /// Position of the pattern.
        at: Box<Location>,
        /// Rule name.
        name: String,
        /// The pattern.
        regex: String,
    },
    /// A regex that matches the empty string.
    #[error("{at}: rule {name:?}: regex {regex:?} matches an empty string; make it match at least one byte")]
    EmptyRegexMatch {
        /// Position of the pattern.
        at: Box<Location>,
        /// Rule name.
        name: String,
        /// The pattern.
        regex: String,
    },
    /// `max_len` out of range.
    #[error(
        "{at}: rule {name:?}: max_len = {value} is out of range; use 1 to {REGEX_MAX_LEN} bytes"
    )]
    MaxLenRange {
        /// Position of the value.
        at: Box<Location>,
        /// Rule name.
        name: String,
        /// The value given.
        value: i64,
    },
    /// A known-secret path could not be read.
    #[error("{entry}: failed to read {}: {error}; check that the secret is mounted at this path and readable", path.display())]
    KnownSecretRead {
        /// The config entry, such as `known_secrets[0] ("dt-ingest-token")`.
        entry: String,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// A known-secret path is neither a regular file nor a directory.
    #[error("{entry}: {} is neither a regular file nor a directory; point path at the secret's file or at its volume directory", path.display())]
    KnownSecretKind {
        /// The config entry.
        entry: String,
        /// The path.
        path: PathBuf,
    },
    /// A known-secret file is empty, or its directory has no files.
    #[error("{entry}: {} {what}; put the secret value there or remove the entry", path.display())]
    KnownSecretEmpty {
        /// The config entry.
        entry: String,
        /// The file or directory.
        path: PathBuf,
        /// `is empty` or `has no files`.
        what: &'static str,
    },
    /// A known-secret value is too short or too long. The value is not
    /// shown.
    #[error("{entry}: the value in {} is {len} bytes long, but a known secret must be {min} to {max} bytes; check that the file contains the whole secret and nothing else", path.display())]
    KnownSecretLength {
        /// The config entry.
        entry: String,
        /// The file.
        path: PathBuf,
        /// Length of the value, after the trailing newline was trimmed.
        len: u64,
        /// Minimum length.
        min: usize,
        /// Maximum length.
        max: usize,
    },
    /// A file in a known-secret directory gives an invalid rule name.
    #[error("{entry}: file {} gives the rule name {rule:?}, which is invalid; rename the file or shorten the entry's name (at most {RULE_NAME_MAX} letters, digits, '-', '_', '.' or ':' in all)", path.display())]
    KnownSecretFileName {
        /// The config entry.
        entry: String,
        /// The file.
        path: PathBuf,
        /// The rule name it gives.
        rule: String,
    },
    /// The fingerprint policy has no key.
    #[error("policy \"fingerprint\" needs an HMAC key, but the environment variable {env} is {state} and redact.fingerprint_key_file is not set; set one of them")]
    FingerprintKeyMissing {
        /// The environment variable that was read.
        env: String,
        /// `not set` or `empty`.
        state: &'static str,
    },
    /// The fingerprint key file could not be read.
    #[error("redact.fingerprint_key_file: failed to read {}: {error}; check the path and its permissions", path.display())]
    FingerprintKeyRead {
        /// The key file.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// The fingerprint key file is empty.
    #[error("redact.fingerprint_key_file: {} is empty; write the HMAC key into it (32 random bytes are a good choice)", path.display())]
    FingerprintKeyEmpty {
        /// The key file.
        path: PathBuf,
    },
    /// The rule set failed to compile. This happens for configs built in
    /// code, because [`Config::parse`] checks the rules of a file.
    #[error("{entry}: {error}")]
    Rule {
        /// The config entry the error belongs to, or `rules` when it
        /// belongs to none.
        entry: String,
        /// Error of the rule compiler.
        error: RuleError,
    },
    /// `proxy.listen` or `admin.addr` is not a socket address.
    #[error("{at}: invalid socket address {value:?}; {hint}")]
    InvalidAddress {
        /// Position of the value.
        at: Box<Location>,
        /// The value given.
        value: String,
        /// Suggested fix.
        hint: &'static str,
    },
    /// `proxy.upstream` is not a usable base URL. The message shows no
    /// user information from the URL.
    #[error("{at}: {problem}")]
    InvalidUpstream {
        /// Position of the value.
        at: Box<Location>,
        /// What is wrong, and the fix.
        problem: UpstreamUrlError,
    },
    /// A string key that takes one of a fixed set of values, such as
    /// `proxy.credential_scheme` or `log.format`, has another value.
    #[error("{at}: invalid value {value:?}; use one of {choices}")]
    InvalidChoice {
        /// Position of the value.
        at: Box<Location>,
        /// The value given.
        value: String,
        /// The accepted values, separated by commas.
        choices: &'static str,
    },
    /// An entry of `proxy.forward_credentials` is not an HTTP header name.
    #[error("{at}: invalid HTTP header name {value:?}; use letters, digits and any of !#$%&'*+-.^_`|~, such as \"authorization\" or \"x-api-key\"")]
    InvalidHeaderName {
        /// Position of the entry.
        at: Box<Location>,
        /// The value given.
        value: String,
    },
    /// A count or size limit of `[proxy]` or `[admin]` is out of range.
    #[error("{at}: {value} is out of range; {range}", range = service::range_hint(*min, *max, unit))]
    LimitRange {
        /// Position of the value.
        at: Box<Location>,
        /// The value given.
        value: i64,
        /// Smallest valid value.
        min: u64,
        /// Largest valid value.
        max: u64,
        /// Unit of the value, such as `bytes`.
        unit: &'static str,
    },
    /// A time limit of `[proxy]`, such as `proxy.header_timeout`, is not a
    /// duration, is zero or is longer than [`TIME_LIMIT_MAX`].
    #[error("{at}: invalid duration {value:?}: {problem}; {hint}", hint = service::TIME_LIMIT_HINT)]
    InvalidTimeLimit {
        /// Position of the value.
        at: Box<Location>,
        /// The value given.
        value: String,
        /// Message of the duration parser, or the range problem.
        problem: String,
    },
    /// `log.filter` is not a valid `tracing_subscriber::EnvFilter`.
    #[error("{at}: invalid log filter {value:?}: {message}; write tracing-subscriber EnvFilter directives such as \"info\" or \"dtredact=debug,hyper=warn\"")]
    InvalidLogFilter {
        /// Position of the value.
        at: Box<Location>,
        /// The value given.
        value: String,
        /// Message of the filter parser.
        message: String,
    },
    /// [`ProxyConfig::to_options`] found no upstream URL.
    #[error("proxy.upstream is not set; set proxy.upstream in the config file or pass --upstream")]
    UpstreamMissing,
    /// [`ProxyConfig::to_options`] found a value that a config file could
    /// not contain, set in code or from a command-line flag.
    #[error("{key}: {problem}")]
    InvalidProxyOption {
        /// The config key, such as `proxy.shutdown_grace`.
        key: &'static str,
        /// The value, what is wrong with it, and the fix.
        problem: String,
    },
}

impl Config {
    /// Reads, parses and checks a config file. The known-secret files and
    /// the fingerprint key are read later, by [`Config::build_redactor`].
    ///
    /// # Errors
    ///
    /// [`ConfigError::Read`] when the file cannot be read, and any error of
    /// [`Config::parse`].
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and checks config text. `origin` is the file the text came
    /// from: errors name it, and relative paths in the config are resolved
    /// against its directory.
    ///
    /// # Errors
    ///
    /// A TOML syntax error, an unknown key, a value of the wrong type or out
    /// of range, or an invalid rule.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let source = Source { text, origin };
        let deserializer = toml::Deserializer::new(text);
        let raw: raw::Config = serde_path_to_error::deserialize(deserializer)
            .map_err(|e| source.deserialize_error(e))?;
        raw.validate(&source)
    }

    /// Reads the known-secret files and the fingerprint key, compiles the
    /// rules and returns the redactor.
    ///
    /// # Errors
    ///
    /// A known-secret path that cannot be read, is empty or contains a value of
    /// a length outside [`KNOWN_SECRET_MIN`]..=[`LITERAL_MAX`], a missing or
    /// unreadable fingerprint key, or a rule that does not compile.
    pub fn build_redactor(&self) -> Result<Redactor, ConfigError> {
        let policy = match self.redact.policy {
            PolicyName::KeepId => Policy::KeepId,
            PolicyName::Full => Policy::Full,
            PolicyName::Placeholder => Policy::Placeholder,
            PolicyName::Fingerprint => Policy::Fingerprint(self.fingerprint_key()?),
        };
        let mut builder = Redactor::builder();
        builder.policy(policy).builtin(BuiltinOptions {
            partial_secrets: self.redact.partial_secrets,
            base64: self.redact.base64,
            legacy: self.redact.legacy_tokens,
        });
        for rule in &self.rules {
            match &rule.pattern {
                RulePattern::Literal(literal) => builder.literal(&rule.name, literal.as_bytes()),
                RulePattern::Regex { regex, max_len } => builder.regex(&rule.name, regex, *max_len),
            };
        }
        for (index, secret) in self.known_secrets.iter().enumerate() {
            for (name, value) in secrets::read_values(secret, index)? {
                builder.known_secret(&name, &value);
            }
        }
        builder.build().map_err(|e| match e {
            BuildError::Rule(error) => ConfigError::Rule {
                entry: self.entry_of(&error),
                error,
            },
        })
    }

    /// Renders the effective config as TOML: every key with the value in
    /// force, defaults filled in. It shows the paths of known secrets, of
    /// the upstream CA and of the upstream token file, but never their
    /// contents, and never the fingerprint key. Literal rule values are
    /// shown as written in the config.
    pub fn to_effective_toml(&self) -> String {
        effective::render(self)
    }

    /// Reads the fingerprint key from the key file, or else from the
    /// environment variable. One trailing newline is trimmed from a file.
    fn fingerprint_key(&self) -> Result<FingerprintKey, ConfigError> {
        if let Some(path) = &self.redact.fingerprint_key_file {
            let bytes = fs::read(path).map_err(|error| ConfigError::FingerprintKeyRead {
                path: path.clone(),
                error,
            })?;
            let key = trim_line_end(&bytes);
            if key.is_empty() {
                return Err(ConfigError::FingerprintKeyEmpty { path: path.clone() });
            }
            return Ok(FingerprintKey::new(key));
        }
        let env = &self.redact.fingerprint_key_env;
        match std::env::var_os(env) {
            None => Err(ConfigError::FingerprintKeyMissing {
                env: env.clone(),
                state: "not set",
            }),
            Some(v) if v.is_empty() => Err(ConfigError::FingerprintKeyMissing {
                env: env.clone(),
                state: "empty",
            }),
            Some(v) => Ok(FingerprintKey::new(&v.into_encoded_bytes())),
        }
    }

    /// Names the config entry that a rule error is about, such as
    /// `rules[2] ("internal-api-key")`.
    fn entry_of(&self, error: &RuleError) -> String {
        let name = match error {
            RuleError::DuplicateName(n) | RuleError::InvalidName(n) => n,
            RuleError::LiteralLength { name, .. } | RuleError::SecretLength { name, .. } => name,
            RuleError::Regex(
                RegexError::Invalid { name, .. }
                | RegexError::Unbounded { name }
                | RegexError::MaxLen { name, .. }
                | RegexError::Empty { name },
            ) => name,
            _ => return "rules".to_string(),
        };
        if let Some(i) = self.rules.iter().position(|r| &r.name == name) {
            return format!("rules[{i}] ({name:?})");
        }
        let secret = self.known_secrets.iter().position(|s| {
            name.strip_prefix(s.name.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(':'))
        });
        match secret {
            Some(i) => format!("known_secrets[{i}] ({:?})", self.known_secrets[i].name),
            None => "rules".to_string(),
        }
    }
}

/// Suggests a fix for a config file that could not be read.
fn read_hint(error: &io::Error) -> &'static str {
    match error.kind() {
        io::ErrorKind::InvalidData => "save the file as UTF-8",
        _ => "check the path and its permissions",
    }
}

/// Strips one trailing `\n` or `\r\n`.
fn trim_line_end(bytes: &[u8]) -> &[u8] {
    match bytes.strip_suffix(b"\n") {
        Some(rest) => rest.strip_suffix(b"\r").unwrap_or(rest),
        None => bytes,
    }
}

/// The text being parsed and the file it came from.
struct Source<'a> {
    text: &'a str,
    origin: &'a Path,
}

impl Source<'_> {
    /// Returns the location of byte offset `span.start`.
    fn at(&self, span: Range<usize>, key: impl Into<String>) -> Box<Location> {
        let offset = span.start.min(self.text.len());
        let before = &self.text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Box::new(Location {
            file: self.origin.to_path_buf(),
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
            key: key.into(),
        })
    }

    /// Resolves a path from the config against the config file's directory
    /// and makes it absolute, so that it means the same file whatever the
    /// working directory is when the path is used or shown.
    fn resolve(&self, path: &str) -> PathBuf {
        let path = Path::new(path);
        if path.is_absolute() {
            return path.to_path_buf();
        }
        let joined = match self.origin.parent() {
            Some(dir) => dir.join(path),
            None => path.to_path_buf(),
        };
        // `absolute` fails only when the working directory is gone; the
        // joined path is then the best there is.
        std::path::absolute(&joined).unwrap_or(joined)
    }

    /// Turns a TOML or serde error into a located [`ConfigError`]. The
    /// message never quotes the source line, which may contain a literal.
    fn deserialize_error(&self, e: serde_path_to_error::Error<toml::de::Error>) -> ConfigError {
        let key = key_path(e.path());
        let inner = e.inner();
        let message = inner.message().to_string();
        let at = self.at(inner.span().unwrap_or(0..0), key.clone());
        if let Some(rest) = message.strip_prefix("unknown field `") {
            let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
            let expected = expected
                .trim_start_matches(", expected ")
                .trim_start_matches("one of ")
                .replace('`', "");
            return ConfigError::UnknownKey {
                at,
                key: field.to_string(),
                expected,
            };
        }
        if key.is_empty() {
            // The parser puts what it expected on a second line.
            let message = message.trim_end().replace('\n', ": ");
            return ConfigError::Syntax { at, message };
        }
        // Use TOML's names for Rust's types: integer keys deserialize as
        // i64 and arrays of tables as sequences.
        let message = message
            .replace("expected i64", "expected an integer")
            .replace("expected a sequence", "expected an array");
        ConfigError::InvalidType { at, message }
    }
}

/// Formats a serde path as a dotted key such as `rules[2].regex`, leaving
/// out the private fields through which `toml::Spanned` deserializes.
fn key_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } if key.starts_with("$__") => {}
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    out
}

/// Checks a rule name's characters and length, as the rule set does.
fn valid_rule_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= RULE_NAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Deserialized config with spans, before defaults and checks.
mod raw {
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Config {
        redact: Option<Redact>,
        filter: Option<Filter>,
        rules: Option<Vec<Spanned<Rule>>>,
        known_secrets: Option<Vec<Spanned<KnownSecret>>>,
        proxy: Option<service::ProxyTable>,
        admin: Option<service::AdminTable>,
        log: Option<service::LogTable>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Redact {
        policy: Option<Spanned<String>>,
        fingerprint_key_env: Option<Spanned<String>>,
        fingerprint_key_file: Option<Spanned<String>>,
        partial_secrets: Option<bool>,
        base64: Option<bool>,
        legacy_tokens: Option<bool>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Filter {
        idle_flush: Option<Spanned<String>>,
        read_buffer: Option<Spanned<i64>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Rule {
        name: Option<Spanned<String>>,
        literal: Option<Spanned<String>>,
        regex: Option<Spanned<String>>,
        max_len: Option<Spanned<i64>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct KnownSecret {
        name: Option<Spanned<String>>,
        path: Option<Spanned<String>>,
    }

    /// Rule names seen so far, with the key of their first use.
    struct Names(Vec<(String, String)>);

    impl Names {
        fn new() -> Names {
            let builtin = [RULE_TOKEN, RULE_PARTIAL, RULE_LEGACY];
            Names(
                builtin
                    .iter()
                    .map(|n| (n.to_string(), "a built-in rule".to_string()))
                    .collect(),
            )
        }

        /// Checks `name` and records it under `key`.
        fn add(
            &mut self,
            src: &Source,
            name: &Spanned<String>,
            key: &str,
        ) -> Result<String, ConfigError> {
            let value = name.get_ref();
            let at = src.at(name.span(), format!("{key}.name"));
            if !valid_rule_name(value) {
                return Err(ConfigError::InvalidRuleName {
                    at,
                    name: value.clone(),
                });
            }
            if let Some((_, first)) = self.0.iter().find(|(n, _)| n == value) {
                return Err(ConfigError::DuplicateRuleName {
                    at,
                    name: value.clone(),
                    first: first.clone(),
                });
            }
            let line = at.line;
            self.0.push((value.clone(), format!("{key} (line {line})")));
            Ok(value.clone())
        }
    }

    impl Config {
        pub(super) fn validate(self, src: &Source) -> Result<super::Config, ConfigError> {
            let mut names = Names::new();
            let redact = match self.redact {
                Some(r) => r.validate(src)?,
                None => RedactConfig::default(),
            };
            let filter = match self.filter {
                Some(f) => f.validate(src)?,
                None => FilterConfig::default(),
            };
            let mut rules = Vec::new();
            for (i, rule) in self.rules.unwrap_or_default().into_iter().enumerate() {
                rules.push(validate_rule(rule, i, src, &mut names)?);
            }
            let mut known_secrets = Vec::new();
            for (i, secret) in self
                .known_secrets
                .unwrap_or_default()
                .into_iter()
                .enumerate()
            {
                known_secrets.push(validate_known_secret(secret, i, src, &mut names)?);
            }
            let proxy = match self.proxy {
                Some(p) => p.validate(src)?,
                None => ProxyConfig::default(),
            };
            let admin = match self.admin {
                Some(a) => a.validate(src)?,
                None => AdminConfig::default(),
            };
            let log = match self.log {
                Some(l) => l.validate(src)?,
                None => LogConfig::default(),
            };
            Ok(super::Config {
                redact,
                filter,
                rules,
                known_secrets,
                proxy,
                admin,
                log,
            })
        }
    }

    impl Redact {
        fn validate(self, src: &Source) -> Result<RedactConfig, ConfigError> {
            let mut out = RedactConfig::default();
            if let Some(policy) = self.policy {
                let value = policy.get_ref();
                out.policy = value.parse().map_err(|_| ConfigError::InvalidPolicy {
                    at: src.at(policy.span(), "redact.policy"),
                    value: value.clone(),
                })?;
            }
            if let Some(env) = self.fingerprint_key_env {
                if env.get_ref().is_empty() {
                    return Err(ConfigError::EmptyValue {
                        at: src.at(env.span(), "redact.fingerprint_key_env"),
                        hint: "name the environment variable that contains the fingerprint key, or remove the key to use DTREDACT_FINGERPRINT_KEY",
                    });
                }
                out.fingerprint_key_env = env.into_inner();
            }
            if let Some(file) = self.fingerprint_key_file {
                if file.get_ref().is_empty() {
                    return Err(ConfigError::EmptyValue {
                        at: src.at(file.span(), "redact.fingerprint_key_file"),
                        hint: "give the path of the file that contains the fingerprint key, or remove the key",
                    });
                }
                out.fingerprint_key_file = Some(src.resolve(file.get_ref()));
            }
            out.partial_secrets = self.partial_secrets.unwrap_or(out.partial_secrets);
            out.base64 = self.base64.unwrap_or(out.base64);
            out.legacy_tokens = self.legacy_tokens.unwrap_or(out.legacy_tokens);
            Ok(out)
        }
    }

    impl Filter {
        fn validate(self, src: &Source) -> Result<FilterConfig, ConfigError> {
            let mut out = FilterConfig::default();
            if let Some(idle) = self.idle_flush {
                out.idle_flush = humantime::parse_duration(idle.get_ref()).map_err(|e| {
                    ConfigError::InvalidDuration {
                        at: src.at(idle.span(), "filter.idle_flush"),
                        value: idle.get_ref().clone(),
                        message: e.to_string(),
                    }
                })?;
            }
            if let Some(size) = self.read_buffer {
                let value = *size.get_ref();
                out.read_buffer = usize::try_from(value)
                    .ok()
                    .filter(|v| (READ_BUFFER_MIN..=READ_BUFFER_MAX).contains(v))
                    .ok_or_else(|| ConfigError::ReadBufferRange {
                        at: src.at(size.span(), "filter.read_buffer"),
                        value,
                    })?;
            }
            Ok(out)
        }
    }

    fn validate_rule(
        rule: Spanned<Rule>,
        index: usize,
        src: &Source,
        names: &mut Names,
    ) -> Result<RuleConfig, ConfigError> {
        let key = format!("rules[{index}]");
        let span = rule.span();
        let rule = rule.into_inner();
        let name = rule.name.ok_or_else(|| ConfigError::MissingKey {
            at: src.at(span.clone(), key.clone()),
            key: "name",
            hint: "give the rule a name of letters, digits, '-', '_', '.' or ':', which findings and metrics show",
        })?;
        let name = names.add(src, &name, &key)?;
        let pattern = match (rule.literal, rule.regex) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::RulePattern {
                    at: src.at(span, key),
                    name,
                    problem: "has both `literal` and `regex`",
                })
            }
            (None, None) => {
                return Err(ConfigError::RulePattern {
                    at: src.at(span, key),
                    name,
                    problem: "has neither `literal` nor `regex`",
                })
            }
            (Some(literal), None) => {
                if let Some(max_len) = rule.max_len {
                    return Err(ConfigError::MaxLenOnLiteral {
                        at: src.at(max_len.span(), format!("{key}.max_len")),
                        name,
                    });
                }
                let len = literal.get_ref().len();
                if len == 0 || len > LITERAL_MAX {
                    return Err(ConfigError::LiteralLength {
                        at: src.at(literal.span(), format!("{key}.literal")),
                        name,
                        len,
                        max: LITERAL_MAX,
                    });
                }
                RulePattern::Literal(literal.into_inner())
            }
            (None, Some(regex)) => validate_regex(regex, rule.max_len, &key, &name, src)?,
        };
        Ok(RuleConfig { name, pattern })
    }

    /// Checks a regex rule by compiling it the way the rule set will.
    fn validate_regex(
        regex: Spanned<String>,
        max_len: Option<Spanned<i64>>,
        key: &str,
        name: &str,
        src: &Source,
    ) -> Result<RulePattern, ConfigError> {
        let max_len = match max_len {
            None => None,
            Some(m) => {
                let value = *m.get_ref();
                let in_range = usize::try_from(value)
                    .ok()
                    .filter(|v| (1..=REGEX_MAX_LEN).contains(v));
                match in_range {
                    Some(v) => Some(v),
                    None => {
                        return Err(ConfigError::MaxLenRange {
                            at: src.at(m.span(), format!("{key}.max_len")),
                            name: name.to_string(),
                            value,
                        })
                    }
                }
            }
        };
        let at = src.at(regex.span(), format!("{key}.regex"));
        let name = name.to_string();
        let pattern = regex.into_inner();
        match UserRegex::new(&name, 0, &pattern, max_len) {
            Ok(_) => Ok(RulePattern::Regex {
                regex: pattern,
                max_len,
            }),
            Err(RegexError::Invalid { message, .. }) => Err(ConfigError::InvalidRegex {
                at,
                name,
                regex: pattern,
                message,
            }),
            Err(RegexError::Unbounded { .. }) => Err(ConfigError::UnboundedRegex {
                at,
                name,
                regex: pattern,
            }),
            Err(RegexError::Empty { .. }) => Err(ConfigError::EmptyRegexMatch {
                at,
                name,
                regex: pattern,
            }),
            // max_len was range-checked above, so this arm covers
            // variants that a newer rule compiler may add.
            Err(error) => Err(ConfigError::Rule {
                entry: at.to_string(),
                error: RuleError::Regex(error),
            }),
        }
    }

    fn validate_known_secret(
        secret: Spanned<KnownSecret>,
        index: usize,
        src: &Source,
        names: &mut Names,
    ) -> Result<KnownSecretConfig, ConfigError> {
        let key = format!("known_secrets[{index}]");
        let span = secret.span();
        let secret = secret.into_inner();
        let name = secret.name.ok_or_else(|| ConfigError::MissingKey {
            at: src.at(span.clone(), key.clone()),
            key: "name",
            hint: "give the secret a rule name of letters, digits, '-', '_', '.' or ':', which findings and metrics show",
        })?;
        let name = names.add(src, &name, &key)?;
        let path = secret.path.ok_or_else(|| ConfigError::MissingKey {
            at: src.at(span, key.clone()),
            key: "path",
            hint: "give the file that contains the secret, or the directory of a mounted Kubernetes Secret",
        })?;
        if path.get_ref().is_empty() {
            return Err(ConfigError::EmptyValue {
                at: src.at(path.span(), format!("{key}.path")),
                hint: "give the file that contains the secret, or the directory of a mounted Kubernetes Secret",
            });
        }
        Ok(KnownSecretConfig {
            name,
            path: src.resolve(path.get_ref()),
        })
    }
}

/// Reading known-secret values from files.
mod secrets {
    use super::*;

    /// Reads the values of one `[[known_secrets]]` entry and returns them
    /// with their rule names: one value for a file, one per regular file
    /// for a directory.
    pub(super) fn read_values(
        secret: &KnownSecretConfig,
        index: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, ConfigError> {
        let entry = format!("known_secrets[{index}] ({:?})", secret.name);
        let path = &secret.path;
        let read_error = |path: &Path, error| ConfigError::KnownSecretRead {
            entry: entry.clone(),
            path: path.to_path_buf(),
            error,
        };

        let meta = fs::metadata(path).map_err(|e| read_error(path, e))?;
        if meta.is_file() {
            let value = read_value(path, &entry)?;
            return Ok(vec![(secret.name.clone(), value)]);
        }
        if !meta.is_dir() {
            return Err(ConfigError::KnownSecretKind {
                entry,
                path: path.clone(),
            });
        }

        // A mounted Kubernetes Secret contains one symlink per key, pointing
        // through `..data` into a timestamped directory. Names starting
        // with '.' are that machinery, and fs::metadata follows the links.
        let mut files = Vec::new();
        for dir_entry in fs::read_dir(path).map_err(|e| read_error(path, e))? {
            let dir_entry = dir_entry.map_err(|e| read_error(path, e))?;
            let file_name = dir_entry.file_name().to_string_lossy().into_owned();
            if file_name.starts_with('.') {
                continue;
            }
            let file = dir_entry.path();
            let meta = fs::metadata(&file).map_err(|e| read_error(&file, e))?;
            if meta.is_file() {
                files.push((file_name, file));
            }
        }

        if files.is_empty() {
            return Err(ConfigError::KnownSecretEmpty {
                entry,
                path: path.clone(),
                what: "has no files",
            });
        }

        files.sort();
        let mut values = Vec::with_capacity(files.len());
        for (file_name, file) in files {
            let rule = format!("{}:{file_name}", secret.name);
            if !valid_rule_name(&rule) {
                return Err(ConfigError::KnownSecretFileName {
                    entry,
                    path: file,
                    rule,
                });
            }
            values.push((rule, read_value(&file, &entry)?));
        }
        Ok(values)
    }

    /// Reads one value and trims one trailing line end. Reads at most a few
    /// bytes past [`LITERAL_MAX`], so a large file is rejected without
    /// being read whole.
    fn read_value(path: &Path, entry: &str) -> Result<Vec<u8>, ConfigError> {
        let read_error = |error| ConfigError::KnownSecretRead {
            entry: entry.to_string(),
            path: path.to_path_buf(),
            error,
        };
        let file = fs::File::open(path).map_err(read_error)?;
        // Room for LITERAL_MAX bytes, a "\r\n", and one byte that shows the
        // value is too long.
        let cap = LITERAL_MAX as u64 + 3;
        let mut bytes = Vec::new();
        file.take(cap).read_to_end(&mut bytes).map_err(read_error)?;
        let value = trim_line_end(&bytes);
        if value.is_empty() {
            return Err(ConfigError::KnownSecretEmpty {
                entry: entry.to_string(),
                path: path.to_path_buf(),
                what: "is empty",
            });
        }
        if !(KNOWN_SECRET_MIN..=LITERAL_MAX).contains(&value.len()) {
            let len = if bytes.len() as u64 == cap {
                // Truncated by `take`: report the file size instead.
                fs::metadata(path).map_or(cap, |m| m.len())
            } else {
                value.len() as u64
            };
            return Err(ConfigError::KnownSecretLength {
                entry: entry.to_string(),
                path: path.to_path_buf(),
                len,
                min: KNOWN_SECRET_MIN,
                max: LITERAL_MAX,
            });
        }
        Ok(value.to_vec())
    }
}

/// Rendering of the effective config.
mod effective {
    use std::fmt::Write;

    use super::*;

    /// Quotes a string as a TOML basic string.
    pub(super) fn quote(s: &str) -> String {
        toml::Value::String(s.to_string()).to_string()
    }

    pub(super) fn quote_path(path: &Path) -> String {
        quote(&path.to_string_lossy())
    }

    pub(super) fn render(config: &Config) -> String {
        let mut out = String::new();
        write_all(&mut out, config).expect("writing to a String cannot fail");
        out
    }

    fn write_all(out: &mut String, config: &Config) -> fmt::Result {
        let redact = &config.redact;
        writeln!(
            out,
            "# Effective dtredact configuration: every key with the value in force."
        )?;
        writeln!(out)?;
        writeln!(out, "[redact]")?;
        writeln!(out, "policy = {}", quote(redact.policy.as_str()))?;
        writeln!(
            out,
            "fingerprint_key_env = {}",
            quote(&redact.fingerprint_key_env)
        )?;
        match &redact.fingerprint_key_file {
            Some(path) => writeln!(out, "fingerprint_key_file = {}", quote_path(path))?,
            None => writeln!(out, "# fingerprint_key_file is not set")?,
        }
        writeln!(out, "partial_secrets = {}", redact.partial_secrets)?;
        writeln!(out, "base64 = {}", redact.base64)?;
        writeln!(out, "legacy_tokens = {}", redact.legacy_tokens)?;

        writeln!(out)?;
        writeln!(out, "[filter]")?;
        let idle = humantime::format_duration(config.filter.idle_flush).to_string();
        writeln!(out, "idle_flush = {}", quote(&idle))?;
        writeln!(out, "read_buffer = {}", config.filter.read_buffer)?;

        if config.rules.is_empty() {
            writeln!(out)?;
            writeln!(out, "# no [[rules]]")?;
        }
        for rule in &config.rules {
            writeln!(out)?;
            writeln!(out, "[[rules]]")?;
            writeln!(out, "name = {}", quote(&rule.name))?;
            match &rule.pattern {
                RulePattern::Literal(literal) => writeln!(out, "literal = {}", quote(literal))?,
                RulePattern::Regex { regex, max_len } => {
                    writeln!(out, "regex = {}", quote(regex))?;
                    match max_len {
                        Some(m) => writeln!(out, "max_len = {m}")?,
                        None => {
                            writeln!(out, "# max_len is not set: the regex bounds its own length")?
                        }
                    }
                }
            }
        }

        if config.known_secrets.is_empty() {
            writeln!(out)?;
            writeln!(out, "# no [[known_secrets]]")?;
        }
        for secret in &config.known_secrets {
            writeln!(out)?;
            writeln!(out, "[[known_secrets]]")?;
            writeln!(out, "name = {}", quote(&secret.name))?;
            writeln!(out, "path = {}", quote_path(&secret.path))?;
        }

        service::write_effective(out, config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_file_equals_default() {
        let text = include_str!("../config/dtredact.toml");
        let config = Config::parse(text, Path::new("config/dtredact.toml")).unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn effective_toml_of_default_parses_back() {
        let text = Config::default().to_effective_toml();
        let config = Config::parse(&text, Path::new("effective.toml")).unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn policy_names_round_trip() {
        for policy in PolicyName::ALL {
            assert_eq!(policy.as_str().parse::<PolicyName>(), Ok(policy));
            assert_eq!(policy.to_string(), policy.as_str());
            let value = clap::ValueEnum::to_possible_value(&policy).unwrap();
            assert_eq!(value.get_name(), policy.as_str());
        }
        let err = "keepid".parse::<PolicyName>().unwrap_err().to_string();
        assert!(err.contains("\"keepid\""), "{err}");
        assert!(
            err.contains("keep-id, full, placeholder, fingerprint"),
            "{err}"
        );
    }

    #[test]
    fn trim_line_end_trims_one() {
        assert_eq!(trim_line_end(b"abc\n"), b"abc");
        assert_eq!(trim_line_end(b"abc\r\n"), b"abc");
        assert_eq!(trim_line_end(b"abc\n\n"), b"abc\n");
        assert_eq!(trim_line_end(b"abc\r"), b"abc\r");
        assert_eq!(trim_line_end(b"abc"), b"abc");
    }

    #[test]
    fn location_counts_lines_and_chars() {
        let src = Source {
            text: "a = 1\nbé = 2\n",
            origin: Path::new("x.toml"),
        };
        let at = src.at(10..11, "b");
        assert_eq!((at.line, at.column), (2, 4));
        assert_eq!(at.to_string(), "x.toml:2:4: b");
    }
}
