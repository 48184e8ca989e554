//! What a window computes and what it emits.

use serde::{Deserialize, Serialize};

use crate::Time;
use crate::window::Window;

/// An incremental aggregate over the values falling into one window of one key.
pub trait Aggregate: 'static {
    /// A value folded in.
    type Input;
    /// The running state of a window (serializable: it is saved at checkpoints).
    type State: Default + Serialize + serde::de::DeserializeOwned + 'static;
    /// What a window reports.
    type Output: Clone + PartialEq + std::fmt::Debug + timely::ExchangeData;

    /// Folds a value into a window's state.
    fn add(&self, state: &mut Self::State, input: &Self::Input);

    /// Folds another window's state into `into` (sessions that a late event joins merge).
    fn merge(&self, into: &mut Self::State, from: Self::State);

    /// The window's result.
    fn output(&self, state: &Self::State) -> Self::Output;
}

/// A change to a window's result, in differential's terms: `diff` +1 asserts `value`, −1
/// retracts a value asserted before. A late record within the allowed lateness turns into a
/// retraction of the old value and the new value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WindowChange<K, O> {
    /// The window (first, so changes sort by window, then key).
    pub window: Window,
    /// The key (provider, member, …).
    pub key: K,
    /// The result.
    pub value: O,
    /// +1 or −1.
    pub diff: i64,
}

/// A record that arrived after its windows were closed for good.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LateRecord<K, V> {
    /// Its key.
    pub key: K,
    /// Its event time.
    pub event_time: Time,
    /// The record.
    pub value: V,
    /// The watermark when it arrived.
    pub watermark: Time,
    /// Why it was not counted.
    pub reason: String,
}
