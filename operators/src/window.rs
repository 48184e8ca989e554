//! Window shapes and assignment of events to windows.

use serde::{Deserialize, Serialize};

use crate::Time;

/// An event-time window `[start, end)`, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Window {
    /// First millisecond in the window.
    pub start: Time,
    /// First millisecond after the window.
    pub end: Time,
}

/// How events are grouped in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WindowSpec {
    /// Back-to-back windows of `size_ms`: each event is in exactly one.
    Tumbling {
        /// Window length.
        size_ms: u64,
    },
    /// Windows of `size_ms` starting every `slide_ms` (hopping): each event is in
    /// `size_ms / slide_ms` windows.
    Sliding {
        /// Window length.
        size_ms: u64,
        /// Distance between window starts; divides `size_ms`.
        slide_ms: u64,
    },
    /// Per key, events no more than `gap_ms` apart form one session `[first, last + gap)`;
    /// sessions merge when an event bridges them.
    Session {
        /// The longest quiet time within a session.
        gap_ms: u64,
    },
}

/// A window shape that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowSpecError {
    /// Zero length.
    #[error("window size (or session gap) must be positive")]
    ZeroSize,
    /// Slide of zero, longer than the window, or not dividing it.
    #[error("slide {slide_ms} ms must be positive and divide the window size {size_ms} ms")]
    BadSlide {
        /// Window length.
        size_ms: u64,
        /// Slide given.
        slide_ms: u64,
    },
}

impl WindowSpec {
    /// Checks the shape.
    pub fn validate(&self) -> Result<(), WindowSpecError> {
        match *self {
            WindowSpec::Tumbling { size_ms: 0 }
            | WindowSpec::Sliding { size_ms: 0, .. }
            | WindowSpec::Session { gap_ms: 0 } => Err(WindowSpecError::ZeroSize),
            WindowSpec::Sliding { size_ms, slide_ms }
                if slide_ms == 0 || slide_ms > size_ms || size_ms % slide_ms != 0 =>
            {
                Err(WindowSpecError::BadSlide { size_ms, slide_ms })
            }
            _ => Ok(()),
        }
    }

    /// Window length (for sessions, the gap: the window one event alone makes).
    pub fn size_ms(&self) -> u64 {
        match *self {
            WindowSpec::Tumbling { size_ms } | WindowSpec::Sliding { size_ms, .. } => size_ms,
            WindowSpec::Session { gap_ms } => gap_ms,
        }
    }

    /// Calls `each` with every window containing `time`, oldest first (for sessions, the
    /// window the event alone makes: sessions depend on the other events).
    #[inline]
    pub fn for_each_window(&self, time: Time, mut each: impl FnMut(Window)) {
        match *self {
            WindowSpec::Tumbling { size_ms } => {
                let start = time - time % size_ms;
                each(Window { start, end: start + size_ms });
            }
            WindowSpec::Sliding { size_ms, slide_ms } => {
                let last_start = time - time % slide_ms;
                let mut start = last_start.saturating_sub(size_ms - slide_ms);
                start -= start % slide_ms;
                while start <= last_start {
                    if time < start + size_ms {
                        each(Window { start, end: start + size_ms });
                    }
                    start += slide_ms;
                }
            }
            WindowSpec::Session { gap_ms } => each(Window { start: time, end: time + gap_ms }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn windows(spec: WindowSpec, t: Time) -> Vec<Window> {
        let mut out = Vec::new();
        spec.for_each_window(t, |w| out.push(w));
        out
    }

    #[test]
    fn tumbling_puts_each_event_in_one_window() {
        let spec = WindowSpec::Tumbling { size_ms: 300_000 };
        assert_eq!(windows(spec, 299_999), vec![Window { start: 0, end: 300_000 }]);
        assert_eq!(windows(spec, 300_000), vec![Window { start: 300_000, end: 600_000 }]);
    }

    #[test]
    fn validation_rejects_impossible_shapes() {
        assert!(WindowSpec::Tumbling { size_ms: 0 }.validate().is_err());
        assert!(WindowSpec::Sliding { size_ms: 10, slide_ms: 3 }.validate().is_err());
        assert!(WindowSpec::Sliding { size_ms: 10, slide_ms: 20 }.validate().is_err());
        assert!(WindowSpec::Sliding { size_ms: 10, slide_ms: 5 }.validate().is_ok());
    }

    proptest! {
        /// Sliding assignment equals the definition: every window [k*slide, k*slide+size)
        /// that contains t.
        #[test]
        fn sliding_matches_the_definition(t in 0u64..10_000_000, slides in 1u64..8, slide in 1u64..5_000) {
            let size = slide * slides;
            let spec = WindowSpec::Sliding { size_ms: size, slide_ms: slide };
            let expected: Vec<Window> = (0..=t / slide)
                .map(|k| Window { start: k * slide, end: k * slide + size })
                .filter(|w| w.start <= t && t < w.end)
                .collect();
            prop_assert_eq!(windows(spec, t), expected);
        }
    }
}
