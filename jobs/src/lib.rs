//! The jobs of arus and the runtime they share.
//!
//! # Layout
//! The layers, each depending only on those above it:
//! - [`runtime`]: what every job is built from — the cluster and the errors of a run, the
//!   inputs (files, Kafka, the embedded log), the sequenced runtime (one fold in event-time
//!   order, a writer to the topics and the store), checkpointed sinks and dead letters, the
//!   checkpoint coordinator, metrics, and the spec parts jobs share.
//! - One folder per job, each with its pure rules (`mod.rs`), its spec (`spec.rs`) and the job
//!   that runs them (`job.rs`):
//!   - [`eligibility`]: whether a member is covered on a date, from member and plan events,
//!     materialized into the serving store;
//!   - [`adjudication`]: claims priced and decided, accumulators and the claim saga (the fold
//!     spread over threads by family in `shards.rs`);
//!   - [`fraud`]: fraud rules, event-time windows (`windows.rs`) and the ONNX model
//!     (`model.rs`), alerts to `fraud.alerts`;
//!   - [`analytics`]: decisions, payments, accumulators, alerts and dimensions into ClickHouse;
//!   - [`provider_windows`]: claims per provider in event-time windows, a pure timely builder
//!     (`build`) and its runner.
//! - [`pipeline`]: the one loader of pipeline specs (`pipelines/*.toml`), a [`Pipeline`] per
//!   job.

pub mod adjudication;
pub mod analytics;
pub mod eligibility;
pub mod fraud;
pub mod pipeline;
pub mod provider_windows;
pub mod runtime;

pub use pipeline::Pipeline;
