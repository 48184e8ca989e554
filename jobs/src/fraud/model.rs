//! The fraud job's model, behind the [`Scorer`] trait (rows of this build's [`FEATURES`]): an
//! [`OnnxScorer`] is an [`arus_models::OnnxModel`] loaded for them; tests put scorers of their
//! own behind the trait.

use std::path::Path;

pub use arus_models::{ModelError, newest, version_of};

use crate::fraud::FEATURES;

/// Scores claims' features: the probability each is fraudulent.
pub trait Scorer: Send {
    /// Model name and version, as alerts name them.
    fn name(&self) -> &str;
    /// The version.
    fn version(&self) -> &str;
    /// One probability per row, in order.
    fn score(&mut self, rows: &[[i64; FEATURES.len()]]) -> Result<Vec<f64>, ModelError>;
    /// Feature names by importance, most first (for an alert's top features).
    fn importance_order(&self) -> &[String];
}

/// A model file `fraud-v<version>.onnx` for this build's features, run by ONNX Runtime.
pub struct OnnxScorer(arus_models::OnnxModel);

impl OnnxScorer {
    /// Loads a model file; refused when its card says it was trained on other features.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        arus_models::OnnxModel::load(path, &FEATURES).map(OnnxScorer)
    }
}

impl Scorer for OnnxScorer {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn version(&self) -> &str {
        self.0.version()
    }

    fn score(&mut self, rows: &[[i64; FEATURES.len()]]) -> Result<Vec<f64>, ModelError> {
        self.0.score(rows.as_flattened())
    }

    fn importance_order(&self) -> &[String] {
        self.0.importance_order()
    }
}
