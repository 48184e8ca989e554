//! A deterministic generator of a realistic Indonesian health insurer's event traffic.
//!
//! Given a seed, [`generate`] produces the same events, byte for byte, every time: plans,
//! providers with contracts and fee schedules, families of members with NIKs, coverage
//! changes (enrolments, terminations, deaths, newborns, plan-year renewals), prior
//! authorizations, eligibility checks, claims (some submitted weeks late), and payments (some
//! failing). Fraud is injected at a configurable rate, each fraudulent claim with a
//! ground-truth [`FraudLabel`] beside the data.
//!
//! Events come out in event-time order, as they would arrive on the topics. The generator
//! does no I/O: the caller decides where events go (files, the embedded log, Kafka).
//!
//! # Layout
//! - [`config`]: what to generate, validated before anything runs.
//! - [`world`]: the simulation.
//! - [`labels`]: fraud patterns and their labels.
//! - [`reference`]: regions, names, diagnoses, procedures, plans, encounters.
//! - [`rng`]: the seeded random number generator.

pub mod config;
pub mod labels;
pub mod reference;
pub mod rng;
pub mod world;

pub use config::{ConfigError, GeneratorConfig};
pub use labels::{FraudLabel, FraudPattern};
pub use world::{Output, Summary, generate, generate_in_parallel};
