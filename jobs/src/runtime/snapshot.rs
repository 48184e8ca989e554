//! Snapshots of a sequenced job: the fold's state, the events it held back, how far the
//! sequencer had released, where it had received up to in each partition of each topic it
//! reads, and how far its outputs had been written — taken on the sequencer's thread between
//! two steps (a consistent point: everything before is applied, nothing after), and written by
//! the writer thread once every output decided before it is durable. A restart loads the
//! newest and reads only what came after; outputs written after it, before a crash, are found
//! by reading the output topics from the saved offsets (not from their start) and are not
//! written again.
//!
//! # Files
//! `<dir>/snapshot-<epoch>.arus`: `ARUSSNAP`, a CBOR header ([`Header`]), then the fold's
//! state as the fold saved it. Written to a temporary file, synced, renamed into place: a
//! snapshot file is complete or absent. The two newest are kept.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use arus_operators::Time;
use arus_schemas::Event;
use serde::{Deserialize, Serialize};

use super::RunError;

/// The snapshot format: a newer build reading an older format migrates it or says why not.
/// 2: event ids kept with their event time, within a horizon (format 1 kept every id, with no
/// time to expire it by: not migrated — refused, saying so).
pub(crate) const FORMAT: u32 = 2;

const MAGIC: &[u8; 8] = b"ARUSSNAP";

/// Where a job's snapshots go, how often, and what they are of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotSettings {
    /// Directory (created if missing).
    pub dir: PathBuf,
    /// Wall-clock time between snapshots (and one when the input ends or a stop is asked).
    pub interval: Duration,
    /// The job and its topics: a snapshot of another is refused.
    pub identity: String,
}

impl SnapshotSettings {
    /// A spec's `checkpoint`, for the job and topics `identity` names.
    pub(crate) fn of(checkpoint: &super::spec::CheckpointSpec, identity: String) -> Self {
        SnapshotSettings {
            dir: checkpoint.dir.clone(),
            interval: Duration::from_millis(checkpoint.interval.ms()),
            identity,
        }
    }
}

/// Partition → the offset of the next record, per topic (its full name).
pub(crate) type Offsets = BTreeMap<String, BTreeMap<u32, u64>>;

/// What a snapshot holds besides the fold's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Header {
    pub format: u32,
    pub identity: String,
    pub epoch: u64,
    /// Per input topic, where the sequencer had received up to.
    pub positions: Offsets,
    /// Every event before this (event time) had been applied.
    pub released_below: Time,
    /// Events received and not yet applied.
    pub held: Vec<Event>,
    /// Per output topic, how far it had been written (read back from there on restore).
    pub outputs: Offsets,
    /// Ids of outputs read back from the output topics (written by a run that died after its
    /// snapshot) and not decided again yet: still not to be written when they are, though the
    /// positions above may have moved past them.
    #[serde(default)]
    pub written: Vec<String>,
    /// Bytes of the fold's state after the header.
    pub fold_bytes: u64,
}

/// A snapshot read back.
pub(crate) struct Loaded {
    pub header: Header,
    pub fold: Vec<u8>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io { path: path.to_owned(), source }
}

fn epoch_of(path: &Path) -> Option<u64> {
    path.file_name()?.to_str()?.strip_prefix("snapshot-")?.strip_suffix(".arus")?.parse().ok()
}

/// The snapshot files of `dir`, newest first.
fn files(dir: &Path) -> Result<Vec<(u64, PathBuf)>, RunError> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter_map(|path| epoch_of(&path).map(|epoch| (epoch, path)))
        .collect();
    files.sort_unstable_by(|a, b| b.cmp(a));
    Ok(files)
}

/// The newest snapshot in `dir`, if there is one; one of another job, or that does not read,
/// is an error naming it (never silently passed over: a restart from an older one would write
/// what the newer had already).
pub(crate) fn latest(settings: &SnapshotSettings) -> Result<Option<Loaded>, RunError> {
    let Some((_, path)) = files(&settings.dir)?.into_iter().next() else { return Ok(None) };
    let corrupt = |what: String| {
        RunError::Invalid(format!("snapshot {}: {what}; delete it to start from the one before", path.display()))
    };
    let mut file = std::io::BufReader::new(std::fs::File::open(&path).map_err(io(&path))?);
    let mut magic = [0u8; 8];
    file.read_exact(&mut magic).map_err(io(&path))?;
    if &magic != MAGIC {
        return Err(corrupt("not a snapshot of arus".to_owned()));
    }
    let header: Header = ciborium::from_reader(&mut file).map_err(|e| corrupt(format!("its header: {e}")))?;
    if header.format > FORMAT {
        return Err(RunError::Invalid(format!(
            "snapshot {} is of format {}, newer than this build reads ({FORMAT}): run the build that took it",
            path.display(),
            header.format
        )));
    }
    if header.format < FORMAT {
        return Err(RunError::Invalid(format!(
            "snapshot {} is of format {}, which this build no longer reads (format {FORMAT}: event ids kept \
             with their time, to expire): delete {} to start over from the topics, or finish with the build \
             that took it",
            path.display(),
            header.format,
            settings.dir.display()
        )));
    }
    if header.identity != settings.identity {
        return Err(RunError::Invalid(format!(
            "snapshot {} was taken of {:?}, not {:?}: run that, or delete {} to start over",
            path.display(),
            header.identity,
            settings.identity,
            settings.dir.display()
        )));
    }
    let mut fold = Vec::with_capacity(header.fold_bytes as usize);
    file.read_to_end(&mut fold).map_err(io(&path))?;
    if fold.len() as u64 != header.fold_bytes {
        return Err(corrupt(format!("{} bytes of state, {} expected", fold.len(), header.fold_bytes)));
    }
    Ok(Some(Loaded { header, fold }))
}

/// Writes a snapshot atomically and removes all but the newest two; the file written.
pub(crate) fn write(settings: &SnapshotSettings, header: &Header, fold: &[u8]) -> Result<PathBuf, RunError> {
    let dir = &settings.dir;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join(format!("snapshot-{}.arus", header.epoch));
    let temporary = dir.join(format!(".snapshot-{}.arus.tmp", header.epoch));
    {
        let file = std::fs::File::create(&temporary).map_err(io(&temporary))?;
        let mut out = std::io::BufWriter::new(file);
        out.write_all(MAGIC).map_err(io(&temporary))?;
        ciborium::into_writer(header, &mut out)
            .map_err(|e| RunError::Internal(format!("writing a snapshot's header: {e}")))?;
        out.write_all(fold).map_err(io(&temporary))?;
        let file = out.into_inner().map_err(|e| RunError::Io { path: temporary.clone(), source: e.into_error() })?;
        file.sync_all().map_err(io(&temporary))?;
    }
    std::fs::rename(&temporary, &path).map_err(io(&path))?;
    if let Ok(handle) = std::fs::File::open(dir) {
        let _ = handle.sync_all(); // the rename made durable where the platform allows
    }
    for (_, old) in files(dir)?.into_iter().skip(2) {
        let _ = std::fs::remove_file(old);
    }
    Ok(path)
}

/// The epoch after the newest snapshot in `dir` (1 when there is none).
pub(crate) fn next_epoch(settings: &SnapshotSettings) -> Result<u64, RunError> {
    Ok(files(&settings.dir)?.first().map_or(1, |(epoch, _)| epoch + 1))
}

/// Where each input's readers begin (by the inputs' `names`): `positions`, else the beginning.
pub(crate) fn starts(names: &[String], positions: &Offsets, lateness: u64) -> Vec<super::checkpoint::SourceState> {
    names
        .iter()
        .map(|name| super::checkpoint::SourceState {
            positions: positions.get(name).into_iter().flatten().map(|(p, next)| (*p, Some(*next))).collect(),
            lines: 0,
            watermarks: arus_operators::Watermarks::new(lateness),
            next: 0,
            finished: false,
            turn: None,
        })
        .collect()
}

/// A state as CBOR (the folds' snapshots).
pub(crate) fn to_bytes<T: Serialize>(state: &T) -> Result<Vec<u8>, RunError> {
    let mut bytes = Vec::new();
    ciborium::into_writer(state, &mut bytes).map_err(|e| RunError::Internal(format!("saving the state: {e}")))?;
    Ok(bytes)
}

/// A state from CBOR.
pub(crate) fn from_bytes<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, RunError> {
    ciborium::from_reader(bytes).map_err(|e| RunError::Invalid(format!("a snapshot's state does not read: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_is_written_whole_read_back_and_refused_for_another_job() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings =
            SnapshotSettings { dir: dir.path().join("s"), interval: Duration::from_secs(1), identity: "job a".into() };
        assert!(latest(&settings).expect("none yet").is_none());
        assert_eq!(next_epoch(&settings).expect("epoch"), 1);
        for epoch in 1..=3 {
            let header = Header {
                format: FORMAT,
                identity: "job a".into(),
                epoch,
                positions: [("t".to_owned(), [(0, epoch * 10)].into())].into(),
                released_below: epoch * 100,
                held: Vec::new(),
                outputs: Offsets::new(),
                written: Vec::new(),
                fold_bytes: 3,
            };
            write(&settings, &header, b"abc").expect("written");
        }
        let loaded = latest(&settings).expect("read").expect("one");
        assert_eq!((loaded.header.epoch, loaded.header.released_below, loaded.fold), (3, 300, b"abc".to_vec()));
        assert_eq!(loaded.header.positions["t"][&0], 30);
        assert_eq!(files(&settings.dir).expect("files").len(), 2, "the two newest kept");
        assert_eq!(next_epoch(&settings).expect("epoch"), 4);
        let other = SnapshotSettings { identity: "job b".into(), ..settings.clone() };
        let refused = latest(&other).err().expect("refused").to_string();
        assert!(refused.contains("job a") && refused.contains("delete"), "{refused}");
        let old = Header { format: FORMAT - 1, epoch: 8, ..latest(&settings).expect("read").expect("one").header };
        write(&settings, &old, b"abc").expect("written");
        let refused = latest(&settings).err().expect("an older format refused").to_string();
        assert!(refused.contains(&format!("format {}", FORMAT - 1)) && refused.contains("start over"), "{refused}");
        std::fs::write(settings.dir.join("snapshot-9.arus"), b"ARUSSNAPgarbage").expect("write");
        let corrupt = latest(&settings).err().expect("refused").to_string();
        assert!(corrupt.contains("snapshot-9.arus") && corrupt.contains("header"), "{corrupt}");
    }
}
