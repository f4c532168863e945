//! dtredact finds Dynatrace access tokens in byte streams and masks them.
//!
//! The crate is split the way data flows through it:
//!
//! - [`detect`] knows what a secret looks like: the Dynatrace token grammar,
//!   its base64 and percent-encoded forms, legacy tokens after an `Api-Token`
//!   context, known secret values and user rules. It works on byte slices
//!   and knows nothing of I/O.
//! - [`redact`] is the streaming engine. A [`Redactor`] is the compiled rule
//!   set and masking policy, built once and cheap to clone; each byte stream
//!   gets its own [`Stream`], which accepts input in chunks of any size and
//!   returns output that is byte-for-byte the same whatever the chunking.
//! - [`filter`] and [`scan`] are front ends that drive the engine from files
//!   and standard streams.
//!
//! ```
//! use dtredact::{Policy, Redactor};
//!
//! let redactor = Redactor::builder().policy(Policy::KeepId).build().unwrap();
//! let secret = "A".repeat(64);
//! let line = format!("token=dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX.{secret}\n");
//! let (out, findings) = redactor.redact_all(line.as_bytes());
//! assert_eq!(
//!     out,
//!     format!("token=dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX.{}\n", "*".repeat(64)).into_bytes()
//! );
//! assert_eq!(findings[0].token_id.as_deref(), Some("dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX"));
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod cli;
pub mod config;
pub mod corpus;
pub mod detect;
pub mod filter;
pub mod metrics;
pub mod proxy;
pub mod redact;
pub mod reload;
pub mod report;
pub mod scan;
pub mod synth;
pub mod tail;

pub use detect::{Encoding, RULE_LEGACY, RULE_PARTIAL, RULE_TOKEN};
pub use redact::{BuildError, Finding, Policy, Redactor, RedactorBuilder, Stream};
