//! The layers hold (ARCHITECTURE.md): the runtime imports no job, a job imports no job that
//! imports it back, the one loader sits above the jobs, and the gateway depends on no job.
//! Read from the sources themselves, test modules aside (a test may drive a job).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const JOBS: [&str; 5] = ["eligibility", "adjudication", "fraud", "analytics", "provider_windows"];

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut folders = vec![dir.to_owned()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("a source folder").flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
}

/// The top-level modules of the crate a file names through `crate::…`, outside its tests.
fn imports(path: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).expect("a source file");
    // Code only: comments and docs may name any module.
    let code: String = text
        .split("#[cfg(test)]")
        .next()
        .unwrap_or("")
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        found.insert(name);
    }
    // `super::` in a job's folder names its own job; `use crate::{a, b}` lists modules too.
    for (at, _) in code.match_indices("crate::{") {
        let rest = &code[at + "crate::{".len()..];
        let list = &rest[..rest.find('}').unwrap_or(0)];
        found.extend(list.split(',').map(|m| m.trim().split("::").next().unwrap_or("").to_owned()));
    }
    found
}

/// The top-level module a file of `jobs/src` belongs to.
fn module_of(src: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(src).expect("under src");
    let first = relative.components().next().expect("a component").as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_owned()
}

#[test]
fn the_runtime_imports_no_job_and_jobs_import_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in sources(&src) {
        let module = module_of(&src, &path);
        let uses: Vec<String> = imports(&path).into_iter().filter(|m| *m != module && !m.is_empty()).collect();
        graph.entry(module).or_default().extend(uses);
    }
    assert!(graph.contains_key("runtime") && JOBS.iter().all(|j| graph.contains_key(*j)), "{graph:?}");
    let runtime = &graph["runtime"];
    for job in JOBS.iter().chain(&["pipeline"]) {
        assert!(!runtime.contains(*job), "the runtime imports {job}: {runtime:?}");
    }
    for job in JOBS {
        assert!(!graph[job].contains("pipeline"), "{job} imports the loader above it");
    }
    // No cycle: a depth-first walk finds no module on its own path.
    fn walk<'a>(
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        module: &'a str,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if done.contains(module) {
            return;
        }
        assert!(!path.contains(&module), "a cycle: {path:?} → {module}");
        path.push(module);
        for next in graph.get(module).into_iter().flatten() {
            if graph.contains_key(next) {
                walk(graph, next, path, done);
            }
        }
        path.pop();
        done.insert(module);
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        walk(&graph, module, &mut Vec::new(), &mut done);
    }
}

#[test]
fn the_gateway_depends_on_no_job() {
    let manifest = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../gateway/Cargo.toml"))
        .expect("the gateway's manifest");
    let dependencies = manifest.split("[dependencies]").nth(1).expect("dependencies");
    let dependencies = &dependencies[..dependencies.find("\n[").unwrap_or(dependencies.len())];
    for heavy in ["arus-jobs", "timely", "ort", "arus-generator", "arus-models"] {
        assert!(!dependencies.lines().any(|l| l.trim_start().starts_with(heavy)), "the gateway depends on {heavy}");
    }
    assert!(dependencies.contains("arus-schemas") && dependencies.contains("arus-connectors"));
}
