//! Request and response headers: hop-by-hop removal (RFC 9110, section
//! 7.6.1), token masking in values and in the request target, and the
//! upstream credential.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Method;
use hyper::ext::ReasonPhrase;

use crate::redact::CandidateCheck;
use crate::{Finding, Redactor};

/// Headers that apply to one connection only and are never forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Removes hop-by-hop headers, including those that `Connection` names.
/// `Transfer-Encoding` goes too: the body is re-framed on each hop.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::TRANSFER_ENCODING);
}

/// Masks tokens in every header name, and in every header value except
/// those of the headers named in `except`. Returns the findings.
pub fn mask_headers(
    redactor: &Redactor,
    headers: &mut HeaderMap,
    except: &[HeaderName],
) -> Vec<Finding> {
    let mut findings = Vec::new();
    // Most requests have no candidate in any header: check all names and
    // values in one search before copying any.
    let mut check = redactor.candidate_check();
    add_fields(&mut check, headers, except);
    if !check.finish() {
        return findings;
    }
    let names: Vec<HeaderName> = headers.keys().cloned().collect();
    for name in names {
        let (masked_name, mut found) = mask_name(redactor, &name);
        findings.append(&mut found);
        let mut changed = masked_name != name;
        let values: Vec<HeaderValue> = headers.get_all(&name).iter().cloned().collect();
        let mut masked_values = Vec::with_capacity(values.len());
        for value in values {
            if except.contains(&name) || !redactor.has_candidate(value.as_bytes()) {
                masked_values.push(value);
                continue;
            }
            let (out, mut found) = redactor.redact_all(value.as_bytes());
            if found.is_empty() {
                masked_values.push(value);
                continue;
            }
            findings.append(&mut found);
            changed = true;
            // Masks are printable ASCII, so a valid value stays valid;
            // should it not, drop the value rather than forward the secret.
            if let Ok(v) = HeaderValue::from_bytes(&out) {
                masked_values.push(v);
            }
        }
        if changed {
            headers.remove(&name);
            for v in masked_values {
                headers.append(masked_name.clone(), v);
            }
        }
    }
    findings
}

/// Returns whether a request's method, target or headers (names, and the
/// values of headers not in `except`) may contain a token, in one search.
pub fn head_has_candidate(
    redactor: &Redactor,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    except: &[HeaderName],
) -> bool {
    let mut check = redactor.candidate_check();
    check.add(method.as_str().as_bytes());
    check.add(target.as_bytes());
    add_fields(&mut check, headers, except);
    check.finish()
}

/// Adds the inspected parts of `headers` to `check`: every name, and the
/// values of the headers not in `except`.
fn add_fields(check: &mut CandidateCheck<'_>, headers: &HeaderMap, except: &[HeaderName]) {
    for (name, value) in headers {
        check.add(name.as_str().as_bytes());
        if !except.contains(name) {
            check.add(value.as_bytes());
        }
    }
}

/// Masks a token in a header name. A name that is not a valid name after
/// masking (the placeholder's brackets) is masked whole with `*`.
fn mask_name(redactor: &Redactor, name: &HeaderName) -> (HeaderName, Vec<Finding>) {
    let (out, findings) = mask_token_chars(redactor, name.as_str().as_bytes());
    if findings.is_empty() {
        return (name.clone(), findings);
    }
    let masked = HeaderName::from_bytes(&out).unwrap_or_else(|_| {
        HeaderName::from_bytes(&vec![b'*'; out.len()]).expect("a run of `*` is a valid name")
    });
    (masked, findings)
}

/// Masks a token in a request method, which may be any HTTP token, so a
/// client can put a token there. A method that is not valid after masking
/// is masked whole with `*`.
pub fn mask_method(redactor: &Redactor, method: &mut Method) -> Vec<Finding> {
    let (out, findings) = mask_token_chars(redactor, method.as_str().as_bytes());
    if !findings.is_empty() {
        *method = Method::from_bytes(&out).unwrap_or_else(|_| {
            Method::from_bytes(&vec![b'*'; out.len()]).expect("a run of `*` is a valid method")
        });
    }
    findings
}

/// Masks a token in the reason phrase of an HTTP/1 response, which a
/// sink may fill with request data. A phrase that is not valid after
/// masking is dropped, and the client gets the status code's own phrase.
pub fn mask_reason(redactor: &Redactor, extensions: &mut http::Extensions) -> Vec<Finding> {
    let Some(reason) = extensions.get::<ReasonPhrase>() else {
        return Vec::new();
    };
    let (out, findings) = mask_token_chars(redactor, reason.as_bytes());
    if !findings.is_empty() {
        match ReasonPhrase::try_from(out) {
            Ok(masked) => {
                extensions.insert(masked);
            }
            Err(_) => {
                extensions.remove::<ReasonPhrase>();
            }
        }
    }
    findings
}

/// Redacts a short input, skipping the work when it contains no candidate.
fn mask_token_chars(redactor: &Redactor, input: &[u8]) -> (Vec<u8>, Vec<Finding>) {
    if !redactor.has_candidate(input) {
        return (Vec::new(), Vec::new());
    }
    redactor.redact_all(input)
}

/// Masks tokens in a request target (`/path?query`). Returns the masked
/// target and the findings.
pub fn mask_target<'a>(redactor: &Redactor, target: &'a str) -> (Cow<'a, str>, Vec<Finding>) {
    if !redactor.has_candidate(target.as_bytes()) {
        return (Cow::Borrowed(target), Vec::new());
    }
    let (out, findings) = redactor.redact_all(target.as_bytes());
    if findings.is_empty() {
        return (Cow::Borrowed(target), findings);
    }
    (
        Cow::Owned(String::from_utf8_lossy(&out).into_owned()),
        findings,
    )
}

/// The credential dtredact sets on upstream requests, read from a file (a
/// mounted Secret) and read again when the file changes.
#[derive(Clone)]
pub struct Credential {
    path: PathBuf,
    scheme: String,
    current: Arc<RwLock<CredentialState>>,
}

struct CredentialState {
    value: HeaderValue,
    stamp: Option<FileStamp>,
    /// When the file was last read.
    read_at: SystemTime,
}

/// The token file's identity, size and age. A file renamed over it (how a
/// Secret volume is updated) has another inode, and a file written in place
/// has another length or modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    inode: u64,
    modified: SystemTime,
    len: u64,
}

/// A file modified this close to when it was read may have been written
/// again within the same timestamp tick, which leaves its stamp unchanged.
/// Such a file is read again until its stamp is older than this.
const RACY_WINDOW: Duration = Duration::from_secs(2);

/// Errors reading the credential file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// The file could not be read.
    #[error("failed to read the upstream token file {path}: {source}")]
    Read {
        /// File path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is empty or contains bytes not allowed in a header.
    #[error("the upstream token file {path} is empty or holds characters not allowed in an HTTP header; it must hold the token on one line")]
    Invalid {
        /// File path.
        path: String,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("path", &self.path)
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// Reads the token file. `scheme` is `Api-Token` or `Bearer`.
    ///
    /// # Errors
    ///
    /// The file is unreadable, empty, or not a valid header value.
    pub fn load(path: PathBuf, scheme: &str) -> Result<Credential, CredentialError> {
        let (value, stamp) = read_credential(&path, scheme)?;
        let state = CredentialState {
            value,
            stamp,
            read_at: SystemTime::now(),
        };
        Ok(Credential {
            path,
            scheme: scheme.to_string(),
            current: Arc::new(RwLock::new(state)),
        })
    }

    /// Returns the `Authorization` value to send.
    pub fn value(&self) -> HeaderValue {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .value
            .clone()
    }

    /// Reads the file again if its inode, modification time or size
    /// changed, or if it was modified shortly before it was last read.
    /// Returns whether the value changed. A file that became invalid
    /// leaves the old value in place and returns the error.
    pub fn refresh(&self) -> Result<bool, CredentialError> {
        let stamp = file_stamp(&self.path);
        {
            let state = self.current.read().unwrap_or_else(|e| e.into_inner());
            let settled = stamp.is_some_and(|s| s.modified + RACY_WINDOW <= state.read_at);
            if stamp.is_some() && stamp == state.stamp && settled {
                return Ok(false);
            }
        }
        let read_at = SystemTime::now();
        let (value, stamp) = read_credential(&self.path, &self.scheme)?;
        let mut state = self.current.write().unwrap_or_else(|e| e.into_inner());
        let changed = state.value != value;
        state.value = value;
        state.stamp = stamp;
        state.read_at = read_at;
        Ok(changed)
    }

    /// Re-reads the file every `period` until the process ends.
    pub fn watch(self, period: Duration) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                match self.refresh() {
                    Ok(true) => {
                        tracing::info!(path = %self.path.display(), "upstream token file changed; using the new token")
                    }
                    Ok(false) => {}
                    Err(error) => tracing::error!(%error, "keeping the previous upstream token"),
                }
            }
        });
    }
}

fn file_stamp(path: &std::path::Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;

    let meta = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        inode: meta.ino(),
        modified: meta.modified().ok()?,
        len: meta.len(),
    })
}

fn read_credential(
    path: &std::path::Path,
    scheme: &str,
) -> Result<(HeaderValue, Option<FileStamp>), CredentialError> {
    let stamp = file_stamp(path);
    let text = std::fs::read(path).map_err(|source| CredentialError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let token = text.trim_ascii();
    let invalid = || CredentialError::Invalid {
        path: path.display().to_string(),
    };
    if token.is_empty() {
        return Err(invalid());
    }
    let mut value = Vec::with_capacity(scheme.len() + 1 + token.len());
    value.extend_from_slice(scheme.as_bytes());
    value.push(b' ');
    value.extend_from_slice(token);
    let mut value = HeaderValue::from_bytes(&value).map_err(|_| invalid())?;
    value.set_sensitive(true);
    Ok((value, stamp))
}

#[cfg(test)]
mod tests {
    use super::Credential;
    use crate::synth::{TokenGen, TokenKind};

    fn token(seed: u64) -> String {
        TokenGen::new(seed).token(TokenKind::Classic).text
    }

    fn auth(credential: &Credential) -> String {
        credential.value().to_str().unwrap().to_string()
    }

    #[test]
    fn credential_refresh_sees_quick_rewrites() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        let (first, second, third) = (token(1), token(2), token(3));
        std::fs::write(&file, format!("{first}\n")).unwrap();
        let credential = Credential::load(file.clone(), "Api-Token").unwrap();
        assert_eq!(auth(&credential), format!("Api-Token {first}"));
        assert!(!credential.refresh().unwrap(), "unchanged file");

        // Same length, renamed over the old file at once, as a Secret
        // volume update does. The timestamp may not move, the inode does.
        let staged = dir.path().join("token.new");
        std::fs::write(&staged, format!("{second}\n")).unwrap();
        std::fs::rename(&staged, &file).unwrap();
        assert!(credential.refresh().unwrap(), "renamed file");
        assert_eq!(auth(&credential), format!("Api-Token {second}"));

        // Same length, written in place at once: same inode, and maybe the
        // same timestamp.
        std::fs::write(&file, format!("{third}\n")).unwrap();
        assert!(credential.refresh().unwrap(), "rewritten file");
        assert_eq!(auth(&credential), format!("Api-Token {third}"));
    }
}
