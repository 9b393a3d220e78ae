//! Benchmark: a generated 10,000-card vCard 3.0 corpus (10% with PHOTO) normalized to 4.0
//! (read + normalize + write_v4), beside calcard's bare parse of the same bytes, in MB/s. The
//! corpus is benches/common/corpus.rs, shared with the CardDAV benches.

#[path = "common/corpus.rs"]
mod corpus;

use criterion::{criterion_group, Criterion, Throughput};
use std::hint::black_box;

fn corpus() -> String {
    corpus::cards(10_000).concat()
}

fn bench(c: &mut Criterion) {
    let input = corpus();
    let mut group = c.benchmark_group("vcard_10k_v3");
    group.throughput(Throughput::Bytes(input.len() as u64));
    group.sample_size(10);
    group.bench_function("calcard_bare_parse", |b| {
        b.iter(|| {
            let mut parser = calcard::Parser::new(black_box(&input));
            let mut n = 0usize;
            while let calcard::Entry::VCard(card) = parser.entry() {
                n += card.entries.len();
            }
            black_box(n)
        })
    });
    // The streaming entry point for large inputs (`vcard::for_each_normalized`): each card is
    // normalized and written as soon as it is read, as the bare parse above drops each card as
    // soon as it is read.
    group.bench_function("cardbridge_normalize_to_v4", |b| {
        b.iter(|| {
            let mut bytes = 0usize;
            cardbridge::vcard::for_each_normalized(
                black_box(&input),
                |card| bytes += cardbridge::vcard::write_v4(&card).len(),
                |_| {},
            );
            black_box(bytes)
        })
    });
    // For comparison: the same work holding all 10,000 normalized cards before writing them.
    group.bench_function("cardbridge_read_normalized_all_then_write", |b| {
        b.iter(|| {
            let out = cardbridge::vcard::read_normalized(black_box(&input));
            let mut bytes = 0usize;
            for card in &out.cards {
                bytes += cardbridge::vcard::write_v4(card).len();
            }
            black_box(bytes)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);

/// One pass of one contender, for instruction counts under `valgrind --tool=callgrind`
/// (docs/BENCHMARKS.md): `VCARD_NORMALIZE_ONCE=calcard|ours|corpus` runs that once (`corpus`
/// only builds the input, to subtract) instead of the criterion benches.
fn once(which: &str) {
    let input = corpus();
    match which {
        "calcard" => {
            let mut parser = calcard::Parser::new(black_box(&input));
            let mut n = 0usize;
            while let calcard::Entry::VCard(card) = parser.entry() {
                n += card.entries.len();
            }
            black_box(n);
        }
        "ours" => {
            let mut bytes = 0usize;
            cardbridge::vcard::for_each_normalized(
                black_box(&input),
                |card| bytes += cardbridge::vcard::write_v4(&card).len(),
                |_| {},
            );
            black_box(bytes);
        }
        _ => {
            black_box(&input);
        }
    }
}

fn main() {
    if let Ok(which) = std::env::var("VCARD_NORMALIZE_ONCE") {
        once(&which);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
