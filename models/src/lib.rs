//! The fraud models, beside their files (`models/fraud-v<N>.onnx`, their cards, `train.py`):
//! a model run by ONNX Runtime ([`OnnxModel`]), the newest version in a folder ([`newest`]),
//! and where the runtime library is ([`runtime_library`]).
//!
//! # Layout
//! - [`OnnxModel`]: a `fraud-v<version>.onnx` with its card, checked against the features the
//!   caller computes, scoring rows of features.
//! - [`runtime_library`]: `ORT_DYLIB_PATH`, or the library the test command installs into the
//!   cache, or why there is none; [`install_runtime`] installs it there from PyPI.
//!
//! `ort` is loaded dynamically (`load-dynamic`): a build needs no ONNX Runtime, and a process
//! without one runs everything but the model.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::Session;
use ort::value::Tensor;

/// The ONNX Runtime version the project runs (PyPI's `onnxruntime`).
pub const ONNXRUNTIME_VERSION: &str = "1.32.0";

/// A model could not be found, loaded or run.
#[derive(Debug, Clone, thiserror::Error)]
#[error("fraud model: {0}")]
pub struct ModelError(pub String);

/// The cache folder of arus (`$ARUS_CACHE`, or `~/.cache/arus`).
fn cache_dir() -> Option<PathBuf> {
    std::env::var_os("ARUS_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache/arus")))
}

/// The virtual environment ONNX Runtime is installed into, under the cache.
fn runtime_venv() -> Option<PathBuf> {
    cache_dir().map(|cache| cache.join(format!("venv-onnxruntime-{ONNXRUNTIME_VERSION}")))
}

/// The first `libonnxruntime.so*` file under `dir`.
fn find_library(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = Vec::new();
    let mut folders = vec![dir.to_owned()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() {
                folders.push(path);
            } else if name.to_str().is_some_and(|n| n.starts_with("libonnxruntime.so")) {
                found.push(path);
            }
        }
    }
    found.sort();
    found.into_iter().next()
}

/// Where the ONNX Runtime library is: `ORT_DYLIB_PATH` when set, else the one
/// `deploy/local/onnxruntime.sh` (or [`install_runtime`]) put into the cache; the error says
/// what was looked at.
pub fn runtime_library() -> Result<PathBuf, ModelError> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(ModelError(format!("ORT_DYLIB_PATH={}: no such file", path.display())))
        };
    }
    let venv = runtime_venv().ok_or_else(|| ModelError("no HOME or ARUS_CACHE to look for ONNX Runtime in".into()))?;
    find_library(&venv).ok_or_else(|| {
        ModelError(format!(
            "no ONNX Runtime: ORT_DYLIB_PATH is not set and {} has none (deploy/local/onnxruntime.sh installs \
             onnxruntime {ONNXRUNTIME_VERSION} there)",
            venv.display()
        ))
    })
}

/// Installs PyPI's `onnxruntime` (the project's version) into the cache with Python's venv and
/// pip, as `deploy/local/onnxruntime.sh` does: the library's path, or why not.
pub fn install_runtime() -> Result<PathBuf, ModelError> {
    let venv = runtime_venv().ok_or_else(|| ModelError("no HOME or ARUS_CACHE to install ONNX Runtime in".into()))?;
    let run = |program: &Path, args: &[&str]| -> Result<(), ModelError> {
        let out = std::process::Command::new(program)
            .args(args)
            .output()
            .map_err(|e| ModelError(format!("{}: {e}", program.display())))?;
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().last().unwrap_or("").trim().to_owned();
        Err(ModelError(format!("{} {}: {last}", program.display(), args.join(" "))))
    };
    let venv_text = venv.to_string_lossy().into_owned();
    run(Path::new("python3"), &["-m", "venv", &venv_text])?;
    let requirement = format!("onnxruntime=={ONNXRUNTIME_VERSION}");
    run(&venv.join("bin/pip"), &["install", "--quiet", "--disable-pip-version-check", &requirement])?;
    find_library(&venv).ok_or_else(|| ModelError(format!("onnxruntime installed, but no library under {venv_text}")))
}

static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

/// The process's ONNX Runtime, loaded once from [`runtime_library`]; a clear error when it is
/// not there.
fn environment() -> Result<&'static Environment, ModelError> {
    ENVIRONMENT
        .get_or_init(|| {
            let path = runtime_library().map_err(|e| e.0)?;
            let shown = path.display().to_string();
            ort::init_from(&path).map_err(|e| format!("{shown}: {e}"))?.build().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| ModelError(e.clone()))
}

/// The version in a model file's name, `fraud-v<version>.onnx`.
pub fn version_of(path: &Path) -> Option<u32> {
    path.file_name()?.to_str()?.strip_prefix("fraud-v")?.strip_suffix(".onnx")?.parse().ok()
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

/// A model file `fraud-v<version>.onnx` run by ONNX Runtime: input `features` (float32
/// [n, features]), output `probabilities` (float32 [n, 2], column 1 the fraud probability).
pub struct OnnxModel {
    session: Session,
    name: String,
    version: String,
    width: usize,
    importance: Vec<String>,
}

impl OnnxModel {
    /// Loads a model file for rows of `features` (names in order); its card
    /// (`fraud-v<version>.json` next to it) gives the features it was trained on — refused when
    /// they are not `features` — and their importances.
    pub fn load(path: &Path, features: &[&str]) -> Result<Self, ModelError> {
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
            && trained != features
        {
            return Err(ModelError(format!(
                "{}: trained on {} features ({}…), this build computes {} ({}…): train it again with models/train.py",
                path.display(),
                trained.len(),
                trained.iter().take(3).cloned().collect::<Vec<_>>().join(", "),
                features.len(),
                features[..features.len().min(3)].join(", "),
            )));
        }
        importance.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal).then(a.0.cmp(&b.0)));
        let mut model = OnnxModel {
            session,
            name: "arus-fraud".to_owned(),
            version: version.to_string(),
            width: features.len(),
            importance: importance.into_iter().map(|(k, _)| k).collect(),
        };
        // A model that does not take these features fails here, not on the first claim.
        model.score(&vec![0; features.len()]).map_err(|e| {
            ModelError(format!("{}: does not score this build's {} features: {e}", path.display(), features.len()))
        })?;
        Ok(model)
    }

    /// Model name, as alerts name it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// One probability per row of `rows` (the rows' values one after the other, each as many
    /// as the model's features), in order.
    pub fn score(&mut self, rows: &[i64]) -> Result<Vec<f64>, ModelError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        if !rows.len().is_multiple_of(self.width) {
            return Err(ModelError(format!("{} values are not rows of {} features", rows.len(), self.width)));
        }
        let data: Vec<f32> = rows.iter().map(|v| *v as f32).collect();
        let error = |e: ort::Error| ModelError(format!("{} v{}: {e}", self.name, self.version));
        let input = Tensor::from_array(([rows.len() / self.width, self.width], data)).map_err(error)?;
        let outputs = self.session.run(ort::inputs!["features" => input]).map_err(error)?;
        let (_, probabilities) = outputs["probabilities"].try_extract_tensor::<f32>().map_err(error)?;
        Ok(probabilities.chunks(2).map(|p| f64::from(p.get(1).copied().unwrap_or(0.0))).collect())
    }

    /// Feature names by importance, most first (for an alert's top features).
    pub fn importance_order(&self) -> &[String] {
        &self.importance
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_come_from_file_names_and_the_newest_wins() {
        assert_eq!(version_of(Path::new("models/fraud-v12.onnx")), Some(12));
        assert_eq!(version_of(Path::new("fraud-v.onnx")), None);
        assert_eq!(version_of(Path::new("fraud-v2.json")), None);
        let dir = std::env::temp_dir().join(format!("arus-models-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        for name in ["fraud-v2.onnx", "fraud-v10.onnx", "fraud-v3.json", "other.onnx"] {
            std::fs::write(dir.join(name), b"").expect("write");
        }
        assert_eq!(newest(&dir).map(|(v, _)| v), Some(10));
        let library = dir.join("lib/python3/site-packages/onnxruntime/capi/libonnxruntime.so.1.32.0");
        std::fs::create_dir_all(library.parent().expect("parent")).expect("dirs");
        std::fs::write(&library, b"").expect("write");
        assert_eq!(find_library(&dir), Some(library));
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
