//! `provider-windows` end to end (JSON-lines file in, CSV out) at 1 and 2 workers.
//! Run with `cargo bench --bench provider_windows`; figures in benches/README.md.

use std::io::Write;

use arus_jobs::provider_windows::job as runner;
use arus_jobs::provider_windows::spec::ProviderWindowsSpec;
use arus_jobs::runtime::RunContext;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// The allocator the `arus` binary uses, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CLAIMS: u64 = 200_000;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("claims.jsonl");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&input).expect("input"));
    let mut ts = 1_767_225_600u64;
    for i in 0..CLAIMS {
        ts += i % 3;
        writeln!(
            file,
            r#"{{"claim_id":"C{i:010}","member_id":"M{:09}","provider_id":"P{:05}","billed_amount":{}.{:02},"service_ts":{}}}"#,
            (i * 7_919) % 300_000,
            (i * 104_729) % 2_000,
            150_000 + (i * 31) % 900_000,
            i % 100,
            ts - (i * 13) % 600
        )
        .expect("write");
    }
    file.flush().expect("flush");
    drop(file);
    let pipeline = format!("{}/pipelines/provider-windows.toml", env!("CARGO_MANIFEST_DIR"));
    let overrides =
        vec![format!("source.path={}", input.display()), format!("sink.path={}", dir.path().join("out.csv").display())];
    let spec = ProviderWindowsSpec::load(pipeline.as_ref(), &overrides).expect("spec");

    let mut group = c.benchmark_group("provider_windows");
    group.sample_size(10);
    group.throughput(Throughput::Elements(CLAIMS));
    for workers in [1, 2] {
        group.bench_function(format!("{workers}_workers"), |b| {
            b.iter(|| runner::run(&spec, &RunContext::local(workers, "provider-windows")).expect("run"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
