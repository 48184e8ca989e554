//! Reusable timely dataflow operators for arus.
//!
//! # Time
//! There is one timestamp type, [`Time`]: milliseconds of event time. A stream's timely time
//! is the *watermark* its source had when it read a record, so timely's frontier carries the
//! watermark: once the frontier passes `t`, no record stamped `t` or earlier will arrive, and
//! any window ending at or before `t` is complete. A record's own event time travels in its
//! data and may be earlier than its stamp (it is then late for windows ending by the stamp).
//!
//! Operators process stamps in order, only once the frontier has passed them, so what they
//! emit, and at which timely time, depends only on the stamped input: the same input gives the
//! same output, whatever the number of workers and however messages interleave.
//!
//! # Layout
//! - [`window`]: window shapes ([`WindowSpec`]: tumbling, sliding, session) and the windows an
//!   event falls in.
//! - [`watermark`]: per-partition bounded out-of-orderness watermarks, idle partitions excluded.
//! - [`aggregate`]: what a window computes ([`Aggregate`]) and what it emits ([`WindowChange`],
//!   [`LateRecord`]).
//! - [`checkpoint`]: how stateful operators save and restore their state at checkpoints
//!   ([`StateCheckpoints`]).
//! - `session`: session windows per key, merging when a late event bridges two sessions.
//! - [`window_aggregate`]: the [`WindowAggregate`] operator: keyed event-time windows with
//!   retractions for late data within the allowed lateness and a late output past it.

pub mod aggregate;
pub mod checkpoint;
mod session;
pub mod watermark;
pub mod window;
pub mod window_aggregate;

pub use aggregate::{Aggregate, LateRecord, WindowChange};
pub use checkpoint::StateCheckpoints;
pub use watermark::Watermarks;
pub use window::{Window, WindowSpec};
pub use window_aggregate::WindowAggregate;

/// Event time in milliseconds since 1970-01-01T00:00:00Z: the one timely timestamp of arus.
pub type Time = u64;
