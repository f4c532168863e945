//! Writes a seeded log corpus and its expected `keep-id` output to disk.
//!
//! ```text
//! cargo run --release --example gen_corpus -- --out DIR --size 1GiB --rate 0.0001 --seed 1
//! ```
//!
//! writes `DIR/input.log` and `DIR/expected.log`, line by line, so memory
//! use stays at a few MiB whatever the size.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use dtredact::corpus::{CorpusConfig, CorpusGen};
use dtredact::synth::TokenKind;

/// Generate a log corpus with synthetic Dynatrace tokens and its expected
/// keep-id output.
#[derive(Parser, Debug)]
struct Args {
    /// Output directory; input.log and expected.log are written there.
    #[arg(long)]
    out: PathBuf,
    /// Input size: bytes, or a number with a KiB, MiB, GiB, KB, MB or GB suffix.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    size: u64,
    /// Mean number of tokens per line (0 for none).
    #[arg(long, default_value_t = 0.001)]
    rate: f64,
    /// Seed of the generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Target share of bytes in long lines, from 0 to 1.
    #[arg(long, default_value_t = 0.05)]
    long_share: f64,
    /// Minimum long line length, with the same suffixes as --size.
    #[arg(long, default_value = "16KiB", value_parser = parse_size)]
    long_min: u64,
    /// Maximum long line length, with the same suffixes as --size.
    #[arg(long, default_value = "1MiB", value_parser = parse_size)]
    long_max: u64,
    /// Share of lines that end in CRLF, from 0 to 1.
    #[arg(long, default_value_t = 0.02)]
    crlf_share: f64,
    /// Comma-separated token kinds to inject (for example classic,legacy);
    /// default all. Names are the TokenKind variants in any case, with
    /// optional '-' or '_'.
    #[arg(long, value_parser = parse_kinds)]
    kinds: Option<Kinds>,
    /// End every line with a space instead of a line break, so the input
    /// is one line.
    #[arg(long)]
    no_newlines: bool,
}

#[derive(Debug, Clone)]
struct Kinds(Vec<TokenKind>);

fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("invalid size {text:?}; expected a number such as 1GiB or 500MB"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => {
            return Err(format!(
                "invalid size unit in {text:?}; use KiB, MiB, GiB, KB, MB or GB"
            ))
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

fn parse_kinds(text: &str) -> Result<Kinds, String> {
    let mut kinds = Vec::new();
    for name in text.split(',') {
        let normalized: String = name.chars().filter(|c| *c != '-' && *c != '_').collect();
        let kind = TokenKind::ALL
            .into_iter()
            .find(|k| format!("{k:?}").eq_ignore_ascii_case(&normalized))
            .ok_or_else(|| {
                let names: Vec<String> = TokenKind::ALL.iter().map(|k| format!("{k:?}")).collect();
                format!(
                    "unknown token kind {name:?}; expected one of {}",
                    names.join(", ")
                )
            })?;
        kinds.push(kind);
    }
    Ok(Kinds(kinds))
}

fn create(path: &PathBuf) -> Result<BufWriter<File>, String> {
    let file =
        File::create(path).map_err(|e| format!("failed to create {}: {e}", path.display()))?;
    Ok(BufWriter::with_capacity(1 << 20, file))
}

fn run(args: Args) -> Result<(), String> {
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("failed to create {}: {e}", args.out.display()))?;
    let long_min = usize::try_from(args.long_min).map_err(|e| e.to_string())?;
    let long_max = usize::try_from(args.long_max).map_err(|e| e.to_string())?;
    if long_min == 0 || long_min > long_max {
        return Err(format!(
            "invalid long line range {long_min}..={long_max}; --long-min must be above 0 and at most --long-max"
        ));
    }
    let config = CorpusConfig {
        seed: args.seed,
        size: args.size,
        token_rate: args.rate,
        long_line_share: args.long_share,
        long_line_len: long_min..=long_max,
        crlf_share: args.crlf_share,
        kinds: args.kinds.map_or_else(|| TokenKind::ALL.to_vec(), |k| k.0),
        line_breaks: !args.no_newlines,
    };
    let input_path = args.out.join("input.log");
    let expected_path = args.out.join("expected.log");
    let mut input = create(&input_path)?;
    let mut expected = create(&expected_path)?;
    let mut gen = CorpusGen::new(config);
    gen.write_to(&mut input, &mut expected)
        .map_err(|e| format!("failed to write the corpus to {}: {e}", args.out.display()))?;

    let stats = gen.stats();
    println!(
        "wrote {} and {}: {} bytes, {} lines ({} long, {} bytes in long lines, {} CRLF), {} tokens",
        input_path.display(),
        expected_path.display(),
        stats.bytes,
        stats.lines,
        stats.long_lines,
        stats.long_line_bytes,
        stats.crlf_lines,
        stats.total_tokens()
    );
    for (kind, count) in TokenKind::ALL.iter().zip(stats.tokens) {
        if count > 0 {
            println!("  {kind:?}: {count}");
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("gen_corpus: {message}");
            ExitCode::FAILURE
        }
    }
}
