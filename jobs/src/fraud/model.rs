//! Fraud model scoring through ONNX Runtime (`ort`, the library loaded at run time from
//! `ORT_DYLIB_PATH`), behind the [`Scorer`] trait, and a models folder watched for new
//! versions so a running job picks them up without a restart.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::Session;
use ort::value::Tensor;

use crate::fraud::FEATURES;

/// A model could not be loaded or run.
#[derive(Debug, Clone, thiserror::Error)]
#[error("fraud model: {0}")]
pub struct ModelError(pub String);

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

static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

/// The process's ONNX Runtime, loaded once from `ORT_DYLIB_PATH`; a clear error when it is
/// not there.
fn environment() -> Result<&'static Environment, ModelError> {
    ENVIRONMENT
        .get_or_init(|| {
            let path = std::env::var("ORT_DYLIB_PATH").map_err(|_| {
                "ORT_DYLIB_PATH is not set: point it at libonnxruntime.so (deploy/local/onnxruntime.sh installs \
                 onnxruntime 1.32.0; `source ~/.cache/arus/services.env` sets it)"
                    .to_owned()
            })?;
            if !Path::new(&path).is_file() {
                return Err(format!("ORT_DYLIB_PATH={path}: no such file"));
            }
            ort::init_from(&path).map_err(|e| format!("ORT_DYLIB_PATH={path}: {e}"))?.build().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| ModelError(e.clone()))
}

/// A model file `fraud-v<version>.onnx` run by ONNX Runtime: input `features` (float32
/// [n, `FEATURES.len()`]), output `probabilities` (float32 [n, 2], column 1 the fraud probability).
pub struct OnnxScorer {
    session: Session,
    name: String,
    version: String,
    importance: Vec<String>,
}

/// The version in a model file's name, `fraud-v<version>.onnx`.
pub fn version_of(path: &Path) -> Option<u32> {
    path.file_name()?.to_str()?.strip_prefix("fraud-v")?.strip_suffix(".onnx")?.parse().ok()
}

impl OnnxScorer {
    /// Loads a model file; its card (`fraud-v<version>.json` next to it) gives the feature
    /// importances when present.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let version = version_of(path)
            .ok_or_else(|| ModelError(format!("{}: not named fraud-v<version>.onnx", path.display())))?;
        let environment = environment()?;
        let session = Session::builder(environment)
            .and_then(|mut b| b.commit_from_file(path))
            .map_err(|e| ModelError(format!("{}: {e}", path.display())))?;
        // Its card, read once: the features it was trained on and their importances.
        let card: Option<serde_json::Value> =
            std::fs::read_to_string(path.with_extension("json")).ok().and_then(|text| serde_json::from_str(&text).ok());
        let mut importance: Vec<(String, f64)> = card
            .as_ref()
            .and_then(|card| {
                card["importances"]
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_f64().unwrap_or(0.0))).collect())
            })
            .unwrap_or_default();
        let trained: Option<Vec<String>> =
            card.as_ref().and_then(|card| serde_json::from_value(card["features"].clone()).ok());
        if let Some(trained) = trained
            && trained != FEATURES
        {
            return Err(ModelError(format!(
                "{}: trained on {} features ({}…), this build computes {} ({}…): train it again with models/train.py",
                path.display(),
                trained.len(),
                trained.iter().take(3).cloned().collect::<Vec<_>>().join(", "),
                FEATURES.len(),
                FEATURES[..3].join(", "),
            )));
        }
        importance.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal).then(a.0.cmp(&b.0)));
        let mut scorer = OnnxScorer {
            session,
            name: "arus-fraud".to_owned(),
            version: version.to_string(),
            importance: importance.into_iter().map(|(k, _)| k).collect(),
        };
        // A model that does not take this build's features fails here, not on the first claim.
        scorer.score(&[[0; FEATURES.len()]]).map_err(|e| {
            ModelError(format!("{}: does not score this build's {} features: {e}", path.display(), FEATURES.len()))
        })?;
        Ok(scorer)
    }
}

impl Scorer for OnnxScorer {
    fn name(&self) -> &str {
        &self.name
    }

    fn version(&self) -> &str {
        &self.version
    }

    fn score(&mut self, rows: &[[i64; FEATURES.len()]]) -> Result<Vec<f64>, ModelError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let data: Vec<f32> = rows.iter().flat_map(|r| r.iter().map(|v| *v as f32)).collect();
        let error = |e: ort::Error| ModelError(format!("{} v{}: {e}", self.name, self.version));
        let input = Tensor::from_array(([rows.len(), FEATURES.len()], data)).map_err(error)?;
        let outputs = self.session.run(ort::inputs!["features" => input]).map_err(error)?;
        let (_, probabilities) = outputs["probabilities"].try_extract_tensor::<f32>().map_err(error)?;
        Ok(probabilities.chunks(2).map(|p| f64::from(p.get(1).copied().unwrap_or(0.0))).collect())
    }

    fn importance_order(&self) -> &[String] {
        &self.importance
    }
}

/// The newest `fraud-v<version>.onnx` in a folder.
pub fn newest(dir: &Path) -> Option<(u32, PathBuf)> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter_map(|p| version_of(&p).map(|v| (v, p)))
        .max_by_key(|(v, _)| *v)
}
