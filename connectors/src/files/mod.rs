//! Event files: one file per topic, as JSON lines or as Avro object container files.
//!
//! Files keep the order events were written in, which for the generator is event-time
//! order, so a file replays like the topic it stands for.

mod avro;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use arus_schemas::{Event, json};

pub use avro::{AvroContainerReader, AvroContainerWriter, ContainerError, topic_union_schema};

/// How events are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// One JSON object per line (the JSON form of `arus_schemas::json`), `<topic>.jsonl`.
    JsonLines,
    /// Avro object container, `<topic>.avro`; the schema is the union of the topic's event
    /// schemas, so one file keeps the topic's order across event kinds.
    Avro,
}

impl FileFormat {
    /// The file extension.
    pub fn extension(self) -> &'static str {
        match self {
            FileFormat::JsonLines => "jsonl",
            FileFormat::Avro => "avro",
        }
    }
}

/// A file error, with the path it concerns.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// File or folder.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// An event could not be encoded.
    #[error("{path}: {source}")]
    Encode {
        /// File.
        path: PathBuf,
        /// Why.
        source: arus_schemas::EncodeError,
    },
}

/// What one file received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    /// Path of the file.
    pub path: PathBuf,
    /// Events written.
    pub records: u64,
    /// Bytes written.
    pub bytes: u64,
}

enum Output {
    Json(BufWriter<File>, Vec<u8>),
    Avro(AvroContainerWriter<BufWriter<File>>),
}

struct Open {
    output: Output,
    written: WrittenFile,
}

/// Writes each event to the file of its topic in a folder, opening files as topics appear.
pub struct TopicFilesSink {
    dir: PathBuf,
    format: FileFormat,
    open: BTreeMap<String, Open>,
}

impl TopicFilesSink {
    /// A sink into `dir`, which is created if missing. Existing files of the same names are
    /// replaced.
    pub fn create(dir: &Path, format: FileFormat) -> Result<Self, FileError> {
        std::fs::create_dir_all(dir).map_err(|source| FileError::Io { path: dir.to_owned(), source })?;
        Ok(TopicFilesSink { dir: dir.to_owned(), format, open: BTreeMap::new() })
    }

    /// Appends an event to its topic's file.
    pub fn write(&mut self, event: &Event) -> Result<(), FileError> {
        let topic = event.topic();
        if !self.open.contains_key(topic.as_ref()) {
            let path = self.dir.join(format!("{topic}.{}", self.format.extension()));
            let file = File::create(&path).map_err(|source| FileError::Io { path: path.clone(), source })?;
            let writer = BufWriter::with_capacity(1 << 20, file);
            let output = match self.format {
                FileFormat::JsonLines => Output::Json(writer, Vec::with_capacity(4096)),
                FileFormat::Avro => Output::Avro(
                    AvroContainerWriter::new(writer, &topic)
                        .map_err(|source| FileError::Io { path: path.clone(), source })?,
                ),
            };
            let written = WrittenFile { path, records: 0, bytes: 0 };
            self.open.insert(topic.clone().into_owned(), Open { output, written });
        }
        let open = self.open.get_mut(topic.as_ref()).expect("opened above");
        let path = &open.written.path;
        let bytes = match &mut open.output {
            Output::Json(writer, line) => {
                line.clear();
                json::write_json_line(event, line);
                writer.write_all(line).map_err(|source| FileError::Io { path: path.clone(), source })?;
                line.len() as u64
            }
            Output::Avro(writer) => writer.append(event).map_err(|e| match e {
                avro::AppendError::Io(source) => FileError::Io { path: path.clone(), source },
                avro::AppendError::Encode(source) => FileError::Encode { path: path.clone(), source },
            })?,
        };
        open.written.records += 1;
        open.written.bytes += bytes;
        Ok(())
    }

    /// Flushes and closes every file; returns what each received, sorted by path.
    pub fn finish(self) -> Result<Vec<WrittenFile>, FileError> {
        let mut files = Vec::with_capacity(self.open.len());
        for (_, open) in self.open {
            let path = open.written.path.clone();
            let io = |source| FileError::Io { path: path.clone(), source };
            match open.output {
                Output::Json(mut writer, _) => writer.flush().map_err(io)?,
                Output::Avro(writer) => {
                    writer.finish().map_err(io)?.flush().map_err(io)?;
                }
            }
            files.push(open.written);
        }
        Ok(files)
    }
}

#[cfg(test)]
mod tests;
