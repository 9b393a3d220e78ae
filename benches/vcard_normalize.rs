//! Benchmark: a generated 10,000-card vCard 3.0 corpus (10% with PHOTO) normalized to 4.0
//! (read + normalize + write_v4), beside calcard's bare parse of the same bytes, in MB/s.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

fn corpus() -> String {
    let photo: String = {
        use base64::Engine as _;
        let bytes: Vec<u8> = (0..4096u32).map(|i| (i * 31 % 251) as u8).collect();
        base64::prelude::BASE64_STANDARD.encode(bytes)
    };
    let mut out = String::new();
    for i in 0..10_000 {
        out.push_str("BEGIN:VCARD\r\nVERSION:3.0\r\nPRODID:-//Apple Inc.//macOS 14.2//EN\r\n");
        out.push_str(&format!(
            "N:Surname{i};Given{i};;;\r\nFN:Given{i} Surname{i}\r\n"
        ));
        out.push_str(&format!(
            "ORG:Company {};Department\r\nTITLE:Engineer\r\n",
            i % 97
        ));
        out.push_str(&format!(
            "item1.EMAIL;type=INTERNET;type=HOME;type=pref:person{i}@example.com\r\n"
        ));
        out.push_str("item1.X-ABLabel:_$!<Other>!$_\r\n");
        out.push_str(&format!("TEL;type=CELL;type=VOICE;type=pref:+1 555 {i:04}\r\nTEL;type=WORK;type=VOICE:+1 555 9{i:03}\r\n"));
        out.push_str(&format!("item2.ADR;type=HOME;type=pref:;;{i} Main Street;Springfield;IL;62701;USA\r\nitem2.X-ABADR:us\r\n"));
        out.push_str("BDAY;X-APPLE-OMIT-YEAR=1604:1604-04-15\r\nNOTE:Met at the conference\\, liked the talk.\\nFollow up.\r\n");
        if i % 10 == 0 {
            out.push_str("PHOTO;ENCODING=b;TYPE=JPEG:");
            out.push_str(&photo);
            out.push_str("\r\n");
        }
        out.push_str(&format!(
            "REV:2024-01-15T10:20:30Z\r\nUID:{i:08X}-B2DE-4261-BA99-DE1D1DB52FBE\r\nEND:VCARD\r\n"
        ));
    }
    out
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
criterion_main!(benches);
