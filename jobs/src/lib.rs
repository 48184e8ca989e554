//! The jobs of arus, each a pure dataflow builder (`build(streams, config) -> streams`), and
//! the runner that feeds them from a pipeline spec.
//!
//! # Layout
//! - [`provider_windows`]: claims per provider in event-time windows (count, billed, distinct
//!   members), the first job of the runtime.
//! - [`eligibility`]: whether a member is covered on a date, from member and plan events (the
//!   state the eligibility job will keep and materialize).
//! - [`spec`]: pipeline specs (`pipelines/*.toml`), `--set` overrides, validation.
//! - [`runner`]: runs a spec on timely workers: file source, the job, CSV sink.

pub mod adjudication;
pub mod adjudication_job;
pub mod analytics_job;
pub mod checkpoint;
pub mod eligibility;
pub mod eligibility_job;
pub mod fraud;
pub mod fraud_job;
pub mod fraud_windows;
pub mod metrics;
pub mod model;
pub mod provider_windows;
pub mod runner;
mod shards;
pub mod sinks;
pub mod spec;
