//! Engine throughput on generated corpora held in memory.
//!
//! Each benchmark pushes a 32 MiB corpus through `Redactor::default()` the
//! way `dtredact filter` does: input is copied into the stream's spare
//! buffer (as `read` would), and output is taken from the stream's buffer
//! and discarded. Run with `cargo bench --bench engine`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dtredact::corpus::{generate, CorpusConfig};
use dtredact::Redactor;

const CORPUS_SIZE: u64 = 32 * 1024 * 1024;

/// Redacts `input` and returns the number of output bytes.
fn redact(redactor: &Redactor, mut input: &[u8]) -> u64 {
    let mut stream = redactor.stream();
    let mut written = 0u64;
    while !input.is_empty() {
        let spare = stream.spare();
        let n = spare.len().min(input.len());
        spare[..n].copy_from_slice(&input[..n]);
        stream.commit(n);
        input = &input[n..];
        written += drain(&mut stream);
    }
    stream.finish_input();
    written + drain(&mut stream)
}

/// Consumes all ready output and returns its length.
fn drain(stream: &mut dtredact::Stream) -> u64 {
    let mut total = 0u64;
    loop {
        let out = black_box(stream.output());
        let n = out.len();
        if n == 0 {
            return total;
        }
        stream.consume(n);
        total += n as u64;
    }
}

fn bench_corpus(c: &mut Criterion, name: &str, config: CorpusConfig) {
    let corpus = generate(&config);
    let redactor = Redactor::default();
    // Checked once outside the timing, so that a fast but wrong engine
    // does not pass unnoticed.
    let (out, _) = redactor.redact_all(&corpus.input);
    assert!(
        out == corpus.expected,
        "{name}: engine output differs from the expected output"
    );

    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(corpus.input.len() as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(6));
    group.bench_function("stream", |b| {
        b.iter(|| redact(&redactor, black_box(&corpus.input)))
    });
    group.finish();
}

fn engine(c: &mut Criterion) {
    let base = CorpusConfig {
        seed: 1,
        size: CORPUS_SIZE,
        long_line_share: 0.0,
        ..CorpusConfig::default()
    };
    bench_corpus(
        c,
        "no_candidates",
        CorpusConfig {
            token_rate: 0.0,
            ..base.clone()
        },
    );
    bench_corpus(
        c,
        "sparse_1_per_10000_lines",
        CorpusConfig {
            token_rate: 0.0001,
            ..base.clone()
        },
    );
    bench_corpus(
        c,
        "dense_1_per_10_lines",
        CorpusConfig {
            token_rate: 0.1,
            ..base.clone()
        },
    );
    bench_corpus(
        c,
        "lines_of_1_mib",
        CorpusConfig {
            token_rate: 0.0001,
            long_line_share: 1.0,
            long_line_len: 1024 * 1024..=1024 * 1024,
            ..base
        },
    );
}

criterion_group!(benches, engine);
criterion_main!(benches);
