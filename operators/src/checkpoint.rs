//! How stateful operators take part in checkpoints.
//!
//! A checkpoint is taken *at* a timely time `at`: it holds every effect of the records stamped
//! before `at` and none of those stamped at or after it. Sources stamp no record at or after
//! `at` before they have saved their positions for it, and an operator saves its state once its
//! input frontier has passed `at`, before it applies any stamp at or after `at`. Restoring the
//! saved state and re-reading the sources from the saved positions then gives exactly the
//! output an uninterrupted run gives from `at` on. Who decides `at`, and where the pieces are
//! kept, is the runner's business; operators see only this trait.

use crate::Time;

/// Where an operator's keyed state goes at checkpoints and comes back from on restart.
/// Implementations are shared by every worker of a process.
pub trait StateCheckpoints: Send + Sync + 'static {
    /// Checkpoints `(epoch, at)` for which `operator` on `worker` has not saved its state yet,
    /// by ascending `at`.
    fn due(&self, operator: &str, worker: usize) -> Vec<(u64, Time)>;
    /// Saves the state of `operator` on `worker` for checkpoint `epoch`.
    fn save(&self, operator: &str, worker: usize, epoch: u64, state: Vec<u8>);
    /// The state of `operator` on `worker` in the checkpoint being restored, if any.
    fn restore(&self, operator: &str, worker: usize) -> Option<Vec<u8>>;
}
