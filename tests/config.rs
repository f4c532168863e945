//! Tests of the TOML configuration. Every error must name the file, the key
//! and a fix. Known secrets are read from files and directories and masked
//! end to end, and the effective config never shows a secret.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use dtredact::config::{
    parse_upstream, Config, ConfigError, CredentialScheme, KnownSecretConfig, LogFormat,
    PolicyName, RuleConfig, RulePattern, UpstreamUrlError,
};
use dtredact::proxy::ProxyOptions;
use dtredact::Encoding;

/// Origin of config text parsed in these tests. `Config::parse` never
/// opens it; it only appears in messages.
const ORIGIN: &str = "/etc/dtredact/test-config.toml";

/// A synthetic known-secret value, with characters that percent-encoding
/// changes.
const SECRET: &str = "synthetic/known+secret=0123456789";

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new(ORIGIN))
}

/// Parses `text`, expecting an error, and returns its message.
fn parse_error(text: &str) -> String {
    match parse(text) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(e) => e.to_string(),
    }
}

fn build_error(config: &Config) -> String {
    match config.build_redactor() {
        Ok(_) => panic!("expected an error for {config:?}"),
        Err(e) => e.to_string(),
    }
}

/// Asserts that `message` contains each of `parts`, one assert per part.
fn assert_contains(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
}

fn write(path: &Path, bytes: &[u8]) {
    fs::write(path, bytes).unwrap();
}

fn config_with_secret(name: &str, path: PathBuf) -> Config {
    Config {
        known_secrets: vec![KnownSecretConfig {
            name: name.to_string(),
            path,
        }],
        ..Config::default()
    }
}

// === Loading and parsing ===

#[test]
fn empty_text_gives_defaults() {
    assert_eq!(parse("").unwrap(), Config::default());
}

#[test]
fn every_key_is_read() {
    let config = parse(
        r#"
[redact]
policy = "placeholder"
fingerprint_key_env = "MY_KEY"
fingerprint_key_file = "keys/fp"
partial_secrets = false
base64 = false
legacy_tokens = false

[filter]
idle_flush = "0s"
read_buffer = 4096

[[rules]]
name = "lit"
literal = "ACME-INTERNAL-0001"

[[rules]]
name = "re"
regex = "k=[a-z]+"
max_len = 40

[[known_secrets]]
name = "abs"
path = "/run/secret"
"#,
    )
    .unwrap();
    assert_eq!(config.redact.policy, PolicyName::Placeholder);
    assert_eq!(config.redact.fingerprint_key_env, "MY_KEY");
    assert_eq!(
        config.redact.fingerprint_key_file,
        Some(PathBuf::from("/etc/dtredact/keys/fp"))
    );
    assert!(!config.redact.partial_secrets);
    assert!(!config.redact.base64);
    assert!(!config.redact.legacy_tokens);
    assert_eq!(config.filter.idle_flush, Duration::ZERO);
    assert_eq!(config.filter.read_buffer, 4096);
    assert_eq!(
        config.rules[0].pattern,
        RulePattern::Literal("ACME-INTERNAL-0001".into())
    );
    assert_eq!(
        config.rules[1].pattern,
        RulePattern::Regex {
            regex: "k=[a-z]+".into(),
            max_len: Some(40)
        }
    );
    assert_eq!(config.known_secrets[0].path, PathBuf::from("/run/secret"));
}

#[test]
fn unreadable_file_names_path_and_os_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.toml");
    let err = Config::load(&path).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
    let message = err.to_string();
    assert_contains(
        &message,
        &[
            &path.display().to_string(),
            "No such file",
            "check the path",
        ],
    );
}

#[test]
fn non_utf8_file_asks_for_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.toml");
    write(&path, b"# caf\xe9\n");
    let message = Config::load(&path).unwrap_err().to_string();
    assert_contains(
        &message,
        &[&path.display().to_string(), "save the file as UTF-8"],
    );
}

#[test]
fn load_reads_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dtredact.toml");
    write(&path, b"[filter]\nread_buffer = 8192\n");
    assert_eq!(Config::load(&path).unwrap().filter.read_buffer, 8192);
}

#[test]
fn syntax_error_names_line_and_column() {
    let message = parse_error("[redact]\npolicy = \"full\n");
    assert_contains(&message, &[ORIGIN, ":2:", "invalid TOML", "fix the syntax"]);
}

#[test]
fn syntax_error_hides_the_source_line() {
    // The parser's own report quotes the line, which may contain a literal.
    let message = parse_error("[[rules]]\nname = \"x\"\nliteral = \"ACME-PRIVATE-LITERAL\n");
    assert!(!message.contains("ACME-PRIVATE-LITERAL"), "{message}");
}

#[test]
fn unknown_key_lists_valid_keys() {
    let message = parse_error("[redact]\npolcy = \"full\"\n");
    assert_contains(
        &message,
        &[
            ORIGIN,
            ":2:1",
            "redact.polcy",
            "unknown key \"polcy\"",
            "policy, fingerprint_key_env, fingerprint_key_file",
            "fix its spelling or remove it",
        ],
    );
}

#[test]
fn unknown_key_in_rule_names_the_rule() {
    let message = parse_error(
        "[[rules]]\nname = \"a\"\nliteral = \"abcdefgh\"\n\n[[rules]]\nname = \"b\"\nvalue = \"x\"\n",
    );
    assert_contains(
        &message,
        &[":7:1", "rules[1].value", "name, literal, regex"],
    );
}

#[test]
fn unknown_table_is_rejected() {
    let message = parse_error("[metrics]\nlisten = \"127.0.0.1:0\"\n");
    assert_contains(
        &message,
        &[
            "unknown key \"metrics\"",
            "redact, filter, rules, known_secrets, proxy, admin, log",
        ],
    );
}

#[test]
fn wrong_type_names_key_and_type() {
    let message = parse_error("[redact]\nbase64 = \"yes\"\n");
    assert_contains(
        &message,
        &[
            ORIGIN,
            ":2:10",
            "redact.base64",
            "expected a boolean",
            "expected type",
        ],
    );
    let message = parse_error("[filter]\nread_buffer = \"big\"\n");
    assert_contains(&message, &["filter.read_buffer", "expected an integer"]);
}

#[test]
fn invalid_policy_lists_policies() {
    let message = parse_error("[redact]\npolicy = \"keepid\"\n");
    assert_contains(
        &message,
        &[
            ORIGIN,
            ":2:10",
            "redact.policy",
            "\"keepid\"",
            "keep-id, full, placeholder, fingerprint",
        ],
    );
}

#[test]
fn invalid_duration_shows_value_and_example() {
    let message = parse_error("[filter]\nidle_flush = \"100 parsecs\"\n");
    assert_contains(
        &message,
        &[
            ORIGIN,
            ":2:14",
            "filter.idle_flush",
            "\"100 parsecs\"",
            "\"100ms\"",
        ],
    );
    let message = parse_error("[filter]\nidle_flush = 100\n");
    assert_contains(&message, &["filter.idle_flush", "expected a string"]);
}

#[test]
fn durations_parse() {
    let config = parse("[filter]\nidle_flush = \"2s 500ms\"\n").unwrap();
    assert_eq!(config.filter.idle_flush, Duration::from_millis(2500));
}

#[test]
fn read_buffer_out_of_range() {
    for value in ["1024", "16777217", "-1", "0"] {
        let message = parse_error(&format!("[filter]\nread_buffer = {value}\n"));
        assert_contains(
            &message,
            &[
                ORIGIN,
                ":2:15",
                "filter.read_buffer",
                value,
                "use 4096 to 16777216 bytes",
            ],
        );
    }
    for value in [4096, 16 * 1024 * 1024] {
        let config = parse(&format!("[filter]\nread_buffer = {value}\n")).unwrap();
        assert_eq!(config.filter.read_buffer, value);
    }
}

#[test]
fn rule_with_both_patterns() {
    let message =
        parse_error("[[rules]]\nname = \"both\"\nliteral = \"abcdefgh\"\nregex = \"a{3}\"\n");
    assert_contains(
        &message,
        &[
            ORIGIN,
            ":1:1",
            "rules[0]",
            "\"both\"",
            "has both",
            "exactly one of `literal` or `regex`",
        ],
    );
}

#[test]
fn rule_with_neither_pattern() {
    let message = parse_error("[filter]\n\n[[rules]]\nname = \"neither\"\n");
    assert_contains(
        &message,
        &[
            ORIGIN,
            ":3:1",
            "rules[0]",
            "\"neither\"",
            "has neither",
            "exactly one of",
        ],
    );
}

#[test]
fn rule_without_name() {
    let message = parse_error("[[rules]]\nliteral = \"abcdefgh\"\n");
    assert_contains(
        &message,
        &[
            ORIGIN,
            "rules[0]",
            "missing key \"name\"",
            "give the rule a name",
        ],
    );
}

#[test]
fn invalid_rule_name() {
    let message = parse_error("[[rules]]\nname = \"has space\"\nliteral = \"abcdefgh\"\n");
    assert_contains(
        &message,
        &[
            ORIGIN,
            ":2:8",
            "rules[0].name",
            "\"has space\"",
            "letters, digits",
        ],
    );
}

#[test]
fn invalid_regex_shows_parser_message() {
    let message = parse_error("[[rules]]\nname = \"bad\"\nregex = \"(abc\"\n");
    assert_contains(
        &message,
        &[
            ORIGIN,
            ":3:9",
            "rules[0].regex",
            "\"bad\"",
            "\"(abc\"",
            "unclosed group",
            "fix the pattern",
        ],
    );
}

#[test]
fn unbounded_regex_needs_max_len() {
    let message = parse_error("[[rules]]\nname = \"open\"\nregex = \"key=[a-z]+\"\n");
    assert_contains(
        &message,
        &[
            ORIGIN,
            ":3:9",
            "rules[0].regex",
            "\"open\"",
            "unbounded",
            "add max_len",
        ],
    );
    let config =
        parse("[[rules]]\nname = \"open\"\nregex = \"key=[a-z]+\"\nmax_len = 64\n").unwrap();
    assert_eq!(config.rules.len(), 1);
}

#[test]
fn regex_matching_empty_string() {
    let message = parse_error("[[rules]]\nname = \"empty\"\nregex = \"a?\"\n");
    assert_contains(&message, &["rules[0].regex", "matches an empty string"]);
}

#[test]
fn max_len_out_of_range() {
    let message = parse_error("[[rules]]\nname = \"r\"\nregex = \"a+\"\nmax_len = 0\n");
    assert_contains(
        &message,
        &[
            ORIGIN,
            ":4:11",
            "rules[0].max_len",
            "max_len = 0",
            "use 1 to 65536",
        ],
    );
}

#[test]
fn max_len_on_literal() {
    let message = parse_error("[[rules]]\nname = \"lit\"\nliteral = \"abcdefgh\"\nmax_len = 8\n");
    assert_contains(&message, &["rules[0].max_len", "remove max_len"]);
}

#[test]
fn literal_length_hides_literal() {
    let long = "L".repeat(4097);
    let message = parse_error(&format!(
        "[[rules]]\nname = \"lit\"\nliteral = \"{long}\"\n"
    ));
    assert_contains(
        &message,
        &["rules[0].literal", "4097 bytes", "use 1 to 4096 bytes"],
    );
    assert!(!message.contains(&long), "{message}");
    let message = parse_error("[[rules]]\nname = \"lit\"\nliteral = \"\"\n");
    assert_contains(&message, &["rules[0].literal", "0 bytes"]);
}

#[test]
fn duplicate_rule_names() {
    let message = parse_error(
        "[[rules]]\nname = \"dup\"\nliteral = \"abcdefgh\"\n\n[[rules]]\nname = \"dup\"\nregex = \"x{4}\"\n",
    );
    assert_contains(
        &message,
        &[
            ORIGIN,
            ":6:8",
            "rules[1].name",
            "\"dup\"",
            "rules[0] (line 2)",
            "its own name",
        ],
    );
    let message = parse_error(
        "[[rules]]\nname = \"dup\"\nliteral = \"abcdefgh\"\n\n[[known_secrets]]\nname = \"dup\"\npath = \"/x\"\n",
    );
    assert_contains(&message, &["known_secrets[0].name", "rules[0]"]);
}

#[test]
fn built_in_rule_name_is_taken() {
    let message = parse_error("[[rules]]\nname = \"dynatrace-token\"\nliteral = \"abcdefgh\"\n");
    assert_contains(&message, &["rules[0].name", "a built-in rule"]);
}

#[test]
fn known_secret_without_path() {
    let message = parse_error("[[known_secrets]]\nname = \"s\"\n");
    assert_contains(
        &message,
        &[ORIGIN, "known_secrets[0]", "missing key \"path\""],
    );
}

#[test]
fn relative_paths_resolve_against_config_dir() {
    let config = Config::parse(
        "[[known_secrets]]\nname = \"s\"\npath = \"secrets/token\"\n",
        Path::new("/srv/conf/dtredact.toml"),
    )
    .unwrap();
    assert_eq!(
        config.known_secrets[0].path,
        PathBuf::from("/srv/conf/secrets/token")
    );
}

#[test]
fn relative_origin_gives_absolute_paths() {
    let config = Config::parse(
        "[redact]\nfingerprint_key_file = \"fp\"\n\n[[known_secrets]]\nname = \"s\"\npath = \"token\"\n",
        Path::new("conf/dtredact.toml"),
    )
    .unwrap();
    let secret = &config.known_secrets[0].path;
    assert!(secret.is_absolute(), "{secret:?}");
    assert!(secret.ends_with("conf/token"), "{secret:?}");
    let key_file = config.redact.fingerprint_key_file.unwrap();
    assert!(key_file.is_absolute(), "{key_file:?}");
    assert!(key_file.ends_with("conf/fp"), "{key_file:?}");
}

#[test]
fn example_rules_file_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let config = Config::load(&dir.join("example-rules.toml")).unwrap();
    assert_eq!(config.redact.policy, PolicyName::Full);
    assert_eq!(config.rules.len(), 3);
    assert!(matches!(config.rules[0].pattern, RulePattern::Literal(_)));
    assert!(matches!(
        config.rules[1].pattern,
        RulePattern::Regex { max_len: None, .. }
    ));
    assert!(matches!(
        config.rules[2].pattern,
        RulePattern::Regex {
            max_len: Some(512),
            ..
        }
    ));
    assert_eq!(
        config.known_secrets[0].path,
        dir.join("secrets/ingest-token")
    );
}

#[test]
fn default_config_file_parses_to_default() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dtredact.toml");
    assert_eq!(Config::load(&path).unwrap(), Config::default());
}

// === Known secrets ===

#[test]
fn known_secret_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent");
    let message = build_error(&config_with_secret("dt-ingest-token", path.clone()));
    assert_contains(
        &message,
        &[
            "known_secrets[0] (\"dt-ingest-token\")",
            &path.display().to_string(),
            "No such file",
            "check that the secret is mounted",
        ],
    );
}

#[test]
fn known_secret_empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    write(&path, b"\n");
    let message = build_error(&config_with_secret("s", path.clone()));
    assert_contains(
        &message,
        &["known_secrets[0]", &path.display().to_string(), "is empty"],
    );
}

#[test]
fn known_secret_empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join(".hidden-only")).unwrap();
    write(&dir.path().join(".skipped"), b"synthetic-hidden-value");
    let message = build_error(&config_with_secret("s", dir.path().to_path_buf()));
    assert_contains(&message, &["known_secrets[0]", "has no files"]);
}

#[test]
fn known_secret_too_short_hides_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    write(&path, b"tiny7ab\r\n");
    let message = build_error(&config_with_secret("s", path.clone()));
    assert_contains(
        &message,
        &[
            "known_secrets[0]",
            &path.display().to_string(),
            "7 bytes",
            "8 to 4096 bytes",
        ],
    );
    assert!(!message.contains("tiny7ab"), "{message}");
}

#[test]
fn known_secret_too_long() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    write(&path, &vec![b'v'; 100_000]);
    let message = build_error(&config_with_secret("s", path));
    assert_contains(&message, &["100000 bytes", "8 to 4096 bytes"]);
}

#[test]
fn known_secret_masked_in_all_forms() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    write(&path, format!("{SECRET}\n").as_bytes());
    let redactor = config_with_secret("dt-ingest-token", path)
        .build_redactor()
        .unwrap();

    let basic = base64::engine::general_purpose::STANDARD.encode(format!("user:{SECRET}"));
    let percent = "synthetic%2Fknown%2Bsecret%3D0123456789";
    let input = format!("plain {SECRET} end\nauth: Basic {basic}\nurl ?key={percent}&x=1\n");
    let (out, findings) = redactor.redact_all(input.as_bytes());
    let out = String::from_utf8(out).unwrap();

    assert!(!out.contains(SECRET), "{out}");
    assert!(!out.contains(percent), "{out}");
    assert!(!out.contains(&basic), "{out}");
    assert!(out.starts_with("plain *"), "{out}");
    assert!(out.contains("url ?key=*"), "{out}");
    assert!(out.ends_with("&x=1\n"), "{out}");
    let encodings: Vec<Encoding> = findings.iter().map(|f| f.encoding).collect();
    assert!(encodings.contains(&Encoding::Plain), "{findings:?}");
    assert!(encodings.contains(&Encoding::Percent), "{findings:?}");
    assert!(encodings.contains(&Encoding::Base64), "{findings:?}");
    assert!(
        findings.iter().all(|f| &*f.rule == "dt-ingest-token"),
        "{findings:?}"
    );
}

/// Lays out a directory the way the kubelet mounts a Secret: the data in a
/// timestamped directory, a `..data` symlink to it, and one symlink per key.
fn kubernetes_secret_dir(root: &Path, values: &[(&str, &str)]) {
    let data = root.join("..2024_06_01_12_00_00.000000001");
    fs::create_dir(&data).unwrap();
    for (key, value) in values {
        write(&data.join(key), value.as_bytes());
    }
    std::os::unix::fs::symlink("..2024_06_01_12_00_00.000000001", root.join("..data")).unwrap();
    for (key, _) in values {
        std::os::unix::fs::symlink(format!("..data/{key}"), root.join(key)).unwrap();
    }
}

#[test]
fn known_secret_directory_like_kubernetes() {
    let dir = tempfile::tempdir().unwrap();
    kubernetes_secret_dir(
        dir.path(),
        &[
            ("api-token", "synthetic-api-token-value-0001\n"),
            ("ingest", "synthetic-ingest-value-0002"),
        ],
    );
    let config = config_with_secret("dt", dir.path().to_path_buf());
    let redactor = config.build_redactor().unwrap();
    let input = "a=synthetic-api-token-value-0001 b=synthetic-ingest-value-0002\n";
    let (out, findings) = redactor.redact_all(input.as_bytes());
    let out = String::from_utf8(out).unwrap();
    assert_eq!(out, format!("a={} b={}\n", "*".repeat(30), "*".repeat(27)));
    let rules: Vec<&str> = findings.iter().map(|f| &*f.rule).collect();
    assert_eq!(rules, ["dt:api-token", "dt:ingest"]);
}

#[test]
fn known_secret_directory_dangling_link() {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("nowhere", dir.path().join("token")).unwrap();
    let message = build_error(&config_with_secret("dt", dir.path().to_path_buf()));
    assert_contains(&message, &["known_secrets[0]", "token", "No such file"]);
}

#[test]
fn known_secret_directory_file_name_checked() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("bad name"), b"synthetic-value-0003");
    let message = build_error(&config_with_secret("dt", dir.path().to_path_buf()));
    assert_contains(
        &message,
        &["known_secrets[0]", "\"dt:bad name\"", "rename the file"],
    );
    assert!(!message.contains("synthetic-value-0003"), "{message}");
}

#[test]
fn relative_known_secret_loaded_from_config_dir() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("secrets")).unwrap();
    write(
        &dir.path().join("secrets/token"),
        format!("{SECRET}\n").as_bytes(),
    );
    let config_path = dir.path().join("dtredact.toml");
    write(
        &config_path,
        b"[[known_secrets]]\nname = \"rel\"\npath = \"secrets/token\"\n",
    );
    let redactor = Config::load(&config_path)
        .unwrap()
        .build_redactor()
        .unwrap();
    let (out, findings) = redactor.redact_all(SECRET.as_bytes());
    assert_eq!(out, vec![b'*'; SECRET.len()]);
    assert_eq!(&*findings[0].rule, "rel");
}

// === Fingerprint key ===

#[test]
fn fingerprint_without_key() {
    let config = parse(
        "[redact]\npolicy = \"fingerprint\"\nfingerprint_key_env = \"DTREDACT_TEST_KEY_NEVER_SET\"\n",
    )
    .unwrap();
    let message = build_error(&config);
    assert_contains(
        &message,
        &[
            "DTREDACT_TEST_KEY_NEVER_SET",
            "not set",
            "redact.fingerprint_key_file",
            "set one of them",
        ],
    );
}

#[test]
fn fingerprint_key_file_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fp-key");
    let mut config = Config::default();
    config.redact.policy = PolicyName::Fingerprint;
    config.redact.fingerprint_key_file = Some(path.clone());
    let message = build_error(&config);
    assert_contains(
        &message,
        &[
            "redact.fingerprint_key_file",
            &path.display().to_string(),
            "No such file",
        ],
    );
}

#[test]
fn fingerprint_key_from_env_and_file_agree() {
    let key = "synthetic-fingerprint-key-material-01";
    std::env::set_var("DTREDACT_TEST_KEY_FROM_ENV", key);
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("fp-key");
    write(&key_path, format!("{key}\n").as_bytes());

    let token = format!("dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX.{}", "Q".repeat(64));
    let mut from_env = Config::default();
    from_env.redact.policy = PolicyName::Fingerprint;
    from_env.redact.fingerprint_key_env = "DTREDACT_TEST_KEY_FROM_ENV".into();
    let mut from_file = from_env.clone();
    // The file takes precedence, so a different env var value is ignored.
    from_file.redact.fingerprint_key_env = "DTREDACT_TEST_KEY_NEVER_SET".into();
    from_file.redact.fingerprint_key_file = Some(key_path);

    let (out_env, _) = from_env
        .build_redactor()
        .unwrap()
        .redact_all(token.as_bytes());
    let (out_file, _) = from_file
        .build_redactor()
        .unwrap()
        .redact_all(token.as_bytes());
    assert_eq!(out_env, out_file);
    let out = String::from_utf8(out_env).unwrap();
    assert!(
        out.starts_with("dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX.fp:"),
        "{out}"
    );
}

// === Rule errors from configs built in code ===

#[test]
fn rule_error_names_config_entry() {
    let config = Config {
        rules: vec![
            RuleConfig {
                name: "ok".into(),
                pattern: RulePattern::Literal("abcdefgh".into()),
            },
            RuleConfig {
                name: "has space".into(),
                pattern: RulePattern::Literal("abcdefgh".into()),
            },
        ],
        ..Config::default()
    };
    let message = build_error(&config);
    assert_contains(&message, &["rules[1] (\"has space\")", "invalid"]);
}

// === Effective config ===

#[test]
fn effective_toml_shows_every_key() {
    let text = Config::default().to_effective_toml();
    for key in [
        "[redact]",
        "policy = \"keep-id\"",
        "fingerprint_key_env = \"DTREDACT_FINGERPRINT_KEY\"",
        "fingerprint_key_file",
        "partial_secrets = true",
        "base64 = true",
        "legacy_tokens = true",
        "[filter]",
        "idle_flush = \"100ms\"",
        "read_buffer = 262144",
    ] {
        assert!(text.contains(key), "{key:?} missing from:\n{text}");
    }
}

#[test]
fn effective_toml_hides_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let secret_path = dir.path().join("token");
    write(&secret_path, SECRET.as_bytes());
    let key = "synthetic-fingerprint-key-material-02";
    let key_path = dir.path().join("fp-key");
    write(&key_path, key.as_bytes());
    std::env::set_var("DTREDACT_TEST_KEY_EFFECTIVE", key);

    let mut config = config_with_secret("dt-ingest-token", secret_path.clone());
    config.redact.policy = PolicyName::Fingerprint;
    config.redact.fingerprint_key_env = "DTREDACT_TEST_KEY_EFFECTIVE".into();
    config.redact.fingerprint_key_file = Some(key_path.clone());
    // Building reads both; the rendering must still show neither.
    config.build_redactor().unwrap();

    let text = config.to_effective_toml();
    assert!(!text.contains(SECRET), "{text}");
    assert!(!text.contains(key), "{text}");
    assert!(text.contains(&secret_path.display().to_string()), "{text}");
    assert!(text.contains(&key_path.display().to_string()), "{text}");
    assert!(text.contains("DTREDACT_TEST_KEY_EFFECTIVE"), "{text}");
}

#[test]
fn effective_toml_parses_back() {
    let config = parse(
        r#"
[redact]
policy = "fingerprint"
fingerprint_key_file = "/keys/fp"

[filter]
idle_flush = "1s 250ms"
read_buffer = 65536

[[rules]]
name = "quoted"
literal = "say \"hi\"\tand \\ go"

[[rules]]
name = "re"
regex = '\d{4}-[a-z]+'
max_len = 20

[[known_secrets]]
name = "abs"
path = "/run/secret"
"#,
    )
    .unwrap();
    let text = config.to_effective_toml();
    assert_eq!(parse(&text).unwrap(), config, "{text}");
}

// === [proxy], [admin] and [log] ===

/// A `[proxy]` table that sets every key to a value other than its default.
const FULL_PROXY: &str = r#"
[proxy]
listen = "0.0.0.0:9443"
upstream = "https://logs.example.com:8443/api/v2"
upstream_ca = "certs/upstream-ca.pem"
upstream_http2 = true
upstream_token_file = "/run/secrets/upstream-token"
credential_scheme = "bearer"
forward_credentials = ["Authorization", "X-Api-Key", "authorization"]
redact_responses = false
pass_uninspectable = true
max_body_bytes = 1048576
max_decoded_bytes = 4194304
max_decompression_ratio = 1
max_concurrent_requests = 16
header_timeout = "2s"
body_timeout = "1m"
upstream_timeout = "500ms"
shutdown_grace = "24h"
add_via = false
add_forwarded_for = true

[admin]
addr = "[::1]:9090"
max_leak_ids = 1

[log]
format = "json"
filter = "dtredact=debug,hyper=warn"
"#;

/// Parses `text` with an upstream set and returns the proxy options.
fn proxy_options(text: &str) -> ProxyOptions {
    let text = format!("[proxy]\nupstream = \"http://127.0.0.1:9\"\n{text}");
    let config = parse(&text).unwrap();
    config.proxy.to_options(config.filter.idle_flush).unwrap()
}

#[test]
fn full_proxy_table_to_options() {
    let config = parse(FULL_PROXY).unwrap();
    let options = config.proxy.to_options(Duration::from_millis(250)).unwrap();
    assert_eq!(options.listen, "0.0.0.0:9443".parse().unwrap());
    assert_eq!(
        options.upstream.to_string(),
        "https://logs.example.com:8443/api/v2"
    );
    assert_eq!(
        options.upstream_ca,
        Some(PathBuf::from("/etc/dtredact/certs/upstream-ca.pem"))
    );
    assert!(options.upstream_http2);
    assert_eq!(
        options.upstream_token_file,
        Some(PathBuf::from("/run/secrets/upstream-token"))
    );
    assert_eq!(options.credential_scheme, "Bearer");
    let names: Vec<&str> = options
        .forward_credentials
        .iter()
        .map(|n| n.as_str())
        .collect();
    assert_eq!(names, ["authorization", "x-api-key"]);
    assert!(!options.redact_responses);
    assert!(options.pass_uninspectable);
    assert_eq!(options.max_body_bytes, 1024 * 1024);
    assert_eq!(options.max_decoded_bytes, 4 * 1024 * 1024);
    assert_eq!(options.max_decompression_ratio, 1);
    assert_eq!(options.max_concurrent_requests, 16);
    assert_eq!(options.header_timeout, Duration::from_secs(2));
    assert_eq!(options.body_timeout, Duration::from_secs(60));
    assert_eq!(options.upstream_timeout, Duration::from_millis(500));
    assert_eq!(options.shutdown_grace, Duration::from_secs(24 * 3600));
    assert!(!options.add_via);
    assert!(options.add_forwarded_for);
    assert_eq!(options.idle_flush, Some(Duration::from_millis(250)));

    assert_eq!(config.proxy.credential_scheme, CredentialScheme::Bearer);
    assert_eq!(config.admin.addr, Some("[::1]:9090".parse().unwrap()));
    assert_eq!(config.admin.max_leak_ids, 1);
    assert_eq!(config.log.format, LogFormat::Json);
    assert_eq!(config.log.filter, "dtredact=debug,hyper=warn");
}

#[test]
fn proxy_defaults_match_proxy_options() {
    let config = parse("").unwrap();
    assert_eq!(config.proxy.upstream, None);
    assert_eq!(config.admin.addr, None);
    assert_eq!(config.admin.max_leak_ids, 10_000);
    assert_eq!(config.log.format, LogFormat::Text);
    assert_eq!(config.log.filter, "info");

    let options = proxy_options("");
    let expected = ProxyOptions::new(options.listen, options.upstream.clone());
    assert_eq!(options.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(options.upstream_ca, expected.upstream_ca);
    assert_eq!(options.upstream_http2, expected.upstream_http2);
    assert_eq!(options.upstream_token_file, expected.upstream_token_file);
    assert_eq!(options.credential_scheme, expected.credential_scheme);
    assert_eq!(options.forward_credentials, expected.forward_credentials);
    assert_eq!(options.redact_responses, expected.redact_responses);
    assert_eq!(options.pass_uninspectable, expected.pass_uninspectable);
    assert_eq!(options.max_body_bytes, expected.max_body_bytes);
    assert_eq!(options.max_decoded_bytes, expected.max_decoded_bytes);
    assert_eq!(
        options.max_decompression_ratio,
        expected.max_decompression_ratio
    );
    assert_eq!(
        options.max_concurrent_requests,
        expected.max_concurrent_requests
    );
    assert_eq!(options.header_timeout, expected.header_timeout);
    assert_eq!(options.body_timeout, expected.body_timeout);
    assert_eq!(options.upstream_timeout, expected.upstream_timeout);
    assert_eq!(options.shutdown_grace, expected.shutdown_grace);
    assert_eq!(options.add_via, expected.add_via);
    assert_eq!(options.add_forwarded_for, expected.add_forwarded_for);
    assert_eq!(options.idle_flush, expected.idle_flush);
}

#[test]
fn zero_idle_flush_disables_it() {
    let options = proxy_options("[filter]\nidle_flush = \"0s\"\n");
    assert_eq!(options.idle_flush, None);
}

#[test]
fn empty_strings_mean_not_set() {
    let config = parse("[proxy]\nupstream = \"\"\n[admin]\naddr = \"\"\n").unwrap();
    assert_eq!(config.proxy.upstream, None);
    assert_eq!(config.admin.addr, None);
}

#[test]
fn to_options_without_upstream() {
    let err = Config::default()
        .proxy
        .to_options(Duration::ZERO)
        .unwrap_err();
    assert!(matches!(err, ConfigError::UpstreamMissing), "{err:?}");
    assert_contains(
        &err.to_string(),
        &["proxy.upstream is not set", "--upstream"],
    );
}

#[test]
fn to_options_checks_overrides() {
    let mut config = parse("[proxy]\nupstream = \"http://127.0.0.1:9\"\n").unwrap();
    config.proxy.shutdown_grace = Duration::ZERO;
    let message = config
        .proxy
        .to_options(Duration::ZERO)
        .unwrap_err()
        .to_string();
    assert_contains(&message, &["proxy.shutdown_grace", "is zero", "\"30s\""]);

    let mut config = parse("[proxy]\nupstream = \"http://127.0.0.1:9\"\n").unwrap();
    config.proxy.max_concurrent_requests = 0;
    let message = config
        .proxy
        .to_options(Duration::ZERO)
        .unwrap_err()
        .to_string();
    assert_contains(
        &message,
        &["proxy.max_concurrent_requests", "0 is out of range"],
    );

    let mut config = Config::default();
    config.proxy.upstream = Some("ftp://127.0.0.1/".parse().unwrap());
    let message = config
        .proxy
        .to_options(Duration::ZERO)
        .unwrap_err()
        .to_string();
    assert_contains(&message, &["proxy.upstream", "http:// or https://"]);
}

#[test]
fn invalid_listen_address() {
    for value in ["localhost:8080", "127.0.0.1", "127.0.0.1:70000", ""] {
        let message = parse_error(&format!("[proxy]\nlisten = \"{value}\"\n"));
        assert_contains(
            &message,
            &[
                ORIGIN,
                ":2:10",
                "proxy.listen",
                &format!("invalid socket address \"{value}\""),
                "\"127.0.0.1:8080\"",
            ],
        );
    }
}

#[test]
fn invalid_admin_address() {
    let message = parse_error("[admin]\naddr = \"9090\"\n");
    assert_contains(
        &message,
        &[
            ORIGIN,
            ":2:8",
            "admin.addr",
            "\"9090\"",
            "or \"\" to disable the admin server",
        ],
    );
}

#[test]
fn upstream_needs_http_scheme() {
    for value in ["ftp://logs.example.com", "localhost:8080", "/api/v2"] {
        let message = parse_error(&format!("[proxy]\nupstream = \"{value}\"\n"));
        assert_contains(
            &message,
            &[
                ORIGIN,
                ":2:12",
                "proxy.upstream",
                &format!("\"{value}\""),
                "does not start with http:// or https://",
            ],
        );
    }
}

#[test]
fn upstream_user_info_is_rejected_unshown() {
    for value in [
        "https://dtuser:synthetic-pass-0451@logs.example.com/api",
        "http://synthetic-pass-0451@127.0.0.1:9",
        "dtuser:synthetic-pass-0451@logs.example.com",
    ] {
        let message = parse_error(&format!("[proxy]\nupstream = \"{value}\"\n"));
        assert_contains(
            &message,
            &[
                ORIGIN,
                ":2:12",
                "proxy.upstream",
                "user information",
                "proxy.upstream_token_file",
            ],
        );
        assert!(!message.contains("synthetic-pass-0451"), "{message}");
    }
}

#[test]
fn upstream_without_host_or_port() {
    let message = parse_error("[proxy]\nupstream = \"http://:8080\"\n");
    assert_contains(&message, &["proxy.upstream", "has no host"]);
    for value in ["http://127.0.0.1:70000", "http://127.0.0.1:0"] {
        let message = parse_error(&format!("[proxy]\nupstream = \"{value}\"\n"));
        assert_contains(&message, &["proxy.upstream", "invalid port", "1 to 65535"]);
    }
    let message = parse_error("[proxy]\nupstream = \"http://a b\"\n");
    assert_contains(&message, &["proxy.upstream", "invalid URL \"http://a b\""]);
}

#[test]
fn upstream_query_or_fragment() {
    for value in [
        "https://logs.example.com/api?tenant=x",
        "https://logs.example.com/#top",
    ] {
        let message = parse_error(&format!("[proxy]\nupstream = \"{value}\"\n"));
        assert_contains(&message, &["proxy.upstream", "query or fragment"]);
    }
}

#[test]
fn parse_upstream_for_flags() {
    let uri = parse_upstream("http://[::1]:9000/ingest").unwrap();
    assert_eq!(uri.to_string(), "http://[::1]:9000/ingest");
    assert_eq!(
        parse_upstream("https://u:p@logs.example.com"),
        Err(UpstreamUrlError::UserInfo)
    );
}

#[test]
fn invalid_credential_scheme() {
    let message = parse_error("[proxy]\ncredential_scheme = \"Basic\"\n");
    assert_contains(
        &message,
        &[
            ORIGIN,
            ":2:21",
            "proxy.credential_scheme",
            "\"Basic\"",
            "use one of Api-Token, Bearer",
        ],
    );
}

#[test]
fn invalid_forward_header_name() {
    let message =
        parse_error("[proxy]\nforward_credentials = [\"authorization\", \"x api key\"]\n");
    assert_contains(
        &message,
        &[
            ORIGIN,
            ":2:41",
            "proxy.forward_credentials[1]",
            "invalid HTTP header name \"x api key\"",
            "\"x-api-key\"",
        ],
    );
    let message = parse_error("[proxy]\nforward_credentials = [\"\"]\n");
    assert_contains(&message, &["proxy.forward_credentials[0]", "\"\""]);
    let message = parse_error("[proxy]\nforward_credentials = \"authorization\"\n");
    assert_contains(&message, &["proxy.forward_credentials", "expected"]);
}

#[test]
fn empty_forward_credentials_allowed() {
    let options = proxy_options("forward_credentials = []\n");
    assert!(options.forward_credentials.is_empty());
}

#[test]
fn proxy_time_limits_checked() {
    for key in [
        "header_timeout",
        "body_timeout",
        "upstream_timeout",
        "shutdown_grace",
    ] {
        for (value, problem) in [
            ("0s", "is zero"),
            ("25h", "is longer than 24h"),
            ("soon", "soon"),
        ] {
            let message = parse_error(&format!("[proxy]\n{key} = \"{value}\"\n"));
            assert_contains(
                &message,
                &[
                    ORIGIN,
                    ":2:",
                    &format!("proxy.{key}"),
                    &format!("invalid duration \"{value}\""),
                    problem,
                    "greater than zero and at most 24h",
                ],
            );
        }
    }
}

#[test]
fn proxy_limits_checked() {
    for key in [
        "max_body_bytes",
        "max_decoded_bytes",
        "max_decompression_ratio",
        "max_concurrent_requests",
    ] {
        for value in ["0", "-1"] {
            let message = parse_error(&format!("[proxy]\n{key} = {value}\n"));
            assert_contains(
                &message,
                &[
                    ORIGIN,
                    ":2:",
                    &format!("proxy.{key}"),
                    &format!("{value} is out of range; use 1 "),
                ],
            );
        }
    }
    let message = parse_error("[proxy]\nmax_body_bytes = 0\n");
    assert_contains(&message, &["use 1 or more bytes"]);
    let message = parse_error("[proxy]\nmax_concurrent_requests = 9223372036854775807\n");
    assert_contains(
        &message,
        &["proxy.max_concurrent_requests", "use 1 to ", " requests"],
    );
}

#[test]
fn zero_max_leak_ids() {
    let message = parse_error("[admin]\nmax_leak_ids = 0\n");
    assert_contains(
        &message,
        &[
            ORIGIN,
            ":2:16",
            "admin.max_leak_ids",
            "0 is out of range",
            "use 1 or more token identifiers",
        ],
    );
}

#[test]
fn invalid_log_format() {
    let message = parse_error("[log]\nformat = \"JSON\"\n");
    assert_contains(
        &message,
        &[
            ORIGIN,
            ":2:10",
            "log.format",
            "\"JSON\"",
            "use one of text, json",
        ],
    );
}

#[test]
fn invalid_log_filter() {
    let message = parse_error("[log]\nfilter = \"dtredact=loud\"\n");
    assert_contains(
        &message,
        &[
            ORIGIN,
            ":2:10",
            "log.filter",
            "invalid log filter \"dtredact=loud\"",
            "level",
            "\"dtredact=debug,hyper=warn\"",
        ],
    );
    let message = parse_error("[log]\nfilter = \"\"\n");
    assert_contains(&message, &["log.filter", "the value is empty", "\"info\""]);
}

#[test]
fn empty_proxy_paths_rejected() {
    for key in ["upstream_ca", "upstream_token_file"] {
        let message = parse_error(&format!("[proxy]\n{key} = \"\"\n"));
        assert_contains(
            &message,
            &[
                &format!("proxy.{key}"),
                "the value is empty",
                "remove the key",
            ],
        );
    }
}

#[test]
fn unknown_proxy_key_lists_keys() {
    let message = parse_error("[proxy]\nupstream_url = \"http://127.0.0.1:9\"\n");
    assert_contains(
        &message,
        &[
            ":2:1",
            "proxy.upstream_url",
            "unknown key \"upstream_url\"",
            "listen, upstream, upstream_ca",
        ],
    );
    let message = parse_error("[log]\nlevel = \"info\"\n");
    assert_contains(&message, &["log.level", "format or filter"]);
}

#[test]
fn effective_toml_shows_service_tables() {
    let text = Config::default().to_effective_toml();
    for key in [
        "[proxy]",
        "listen = \"127.0.0.1:8080\"",
        "upstream = \"\"",
        "# upstream_ca is not set",
        "upstream_http2 = false",
        "# upstream_token_file is not set",
        "credential_scheme = \"Api-Token\"",
        "forward_credentials = [\"authorization\"]",
        "redact_responses = true",
        "pass_uninspectable = false",
        "max_body_bytes = 67108864",
        "max_decoded_bytes = 268435456",
        "max_decompression_ratio = 100",
        "max_concurrent_requests = 1024",
        "header_timeout = \"10s\"",
        "body_timeout = \"30s\"",
        "upstream_timeout = \"30s\"",
        "shutdown_grace = \"20s\"",
        "add_via = true",
        "add_forwarded_for = false",
        "[admin]",
        "addr = \"\"",
        "max_leak_ids = 10000",
        "[log]",
        "format = \"text\"",
        "filter = \"info\"",
    ] {
        assert!(text.contains(key), "{key:?} missing from:\n{text}");
    }
}

#[test]
fn effective_toml_with_full_proxy_parses_back() {
    let config = parse(FULL_PROXY).unwrap();
    let text = config.to_effective_toml();
    assert_eq!(parse(&text).unwrap(), config, "{text}");
}

#[test]
fn effective_toml_hides_upstream_token() {
    let dir = tempfile::tempdir().unwrap();
    let token = "synthetic-upstream-token-0789";
    let token_path = dir.path().join("upstream-token");
    write(&token_path, token.as_bytes());
    let mut config = Config::default();
    config.proxy.upstream_token_file = Some(token_path.clone());
    // Set in code, bypassing parse_upstream, which would reject it.
    config.proxy.upstream = Some(
        "https://dtuser:synthetic-pass-0451@logs.example.com"
            .parse()
            .unwrap(),
    );
    let text = config.to_effective_toml();
    assert!(text.contains(&token_path.display().to_string()), "{text}");
    assert!(!text.contains(token), "{text}");
    assert!(!text.contains("synthetic-pass-0451"), "{text}");

    let err = config.proxy.to_options(Duration::ZERO).unwrap_err();
    let message = err.to_string();
    assert_contains(&message, &["proxy.upstream", "user information"]);
    assert!(!message.contains("synthetic-pass-0451"), "{message}");
}
