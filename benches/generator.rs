//! Generator throughput: events generated per second, alone and written to files.
//! Run with `cargo bench --bench generator`; figures are recorded in benches/README.md.

use std::hint::black_box;

use arus_connectors::files::{FileFormat, TopicFilesSink};
use arus_generator::{GeneratorConfig, Output, generate, generate_in_parallel};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

/// The allocator the `arus` binary uses, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        b.iter(|| {
            generate(&config, |o| {
                black_box(o);
                Ok::<(), ()>(())
            })
        })
    });
    for (name, format) in [("to_jsonl_files", FileFormat::JsonLines), ("to_avro_files", FileFormat::Avro)] {
        group.bench_function(name, |b| {
            // A fresh folder per run, made and removed outside the timed part, so the figure
            // is writing new files, as `arus gen` does.
            b.iter_batched(
                || tempfile::tempdir().expect("tempdir"),
                |dir| {
                    let mut sink = TopicFilesSink::create(dir.path(), format).expect("sink");
                    generate_in_parallel(&config, |o| match o {
                        Output::Event(e) => sink.write(&e),
                        Output::Label(_) => Ok(()),
                    })
                    .expect("generate");
                    sink.finish().expect("finish");
                    dir
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
