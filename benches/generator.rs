//! Generator throughput: events generated per second, alone and written to files.
//! Run with `cargo bench --bench generator`; figures are recorded in benches/README.md.

use std::hint::black_box;

use arus_connectors::files::{FileFormat, TopicFilesSink};
use arus_generator::{generate, GeneratorConfig, Output};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn config() -> GeneratorConfig {
    GeneratorConfig { claims: 50_000, days: 30, ..GeneratorConfig::default() }
}

fn count_events(config: &GeneratorConfig) -> u64 {
    generate(config, |_| Ok::<(), ()>(())).expect("generate").total_events
}

fn bench(c: &mut Criterion) {
    let config = config();
    let events = count_events(&config);
    let mut group = c.benchmark_group("generator");
    group.sample_size(10);
    group.throughput(Throughput::Elements(events));
    group.bench_function("generate", |b| {
        b.iter(|| generate(&config, |o| {
            black_box(o);
            Ok::<(), ()>(())
        }))
    });
    for (name, format) in [("to_jsonl_files", FileFormat::JsonLines), ("to_avro_files", FileFormat::Avro)] {
        group.bench_function(name, |b| {
            let dir = tempfile::tempdir().expect("tempdir");
            b.iter(|| {
                let mut sink = TopicFilesSink::create(dir.path(), format).expect("sink");
                generate(&config, |o| match o {
                    Output::Event(e) => sink.write(&e),
                    Output::Label(_) => Ok(()),
                })
                .expect("generate");
                sink.finish().expect("finish")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
