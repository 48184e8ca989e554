//! ClickHouse over HTTP (RowBinary) through the `clickhouse` crate, for the analytics tables.
//!
//! Written to run on the ClickHouse the tests start (Debian's 18.16) as on current ones: the
//! client's row validation is off (18.16 lacks `RowBinaryWithNamesAndTypes`), so
//! [`ClickHouse::check_columns`] compares a row type with the table once at startup instead,
//! naming the column that differs; parameters are bound by the client (`?`), never formatted
//! into SQL by hand. Inserts go in batches and are retried with backoff while the server is
//! unreachable. Migrations are versioned files applied once each ([`ClickHouse::migrate`]).

use std::time::Duration;

pub use clickhouse::Row;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// What went wrong, with the server's words.
#[derive(Debug, thiserror::Error)]
pub enum ClickHouseError {
    /// The server refused or failed a statement.
    #[error("ClickHouse at {url}: {message}")]
    Server {
        /// Where.
        url: String,
        /// What it said.
        message: String,
    },
    /// A table does not have the columns a row type writes.
    #[error("table {table}: {message}")]
    Schema {
        /// The table.
        table: String,
        /// Which column and how it differs.
        message: String,
    },
    /// A migration file is not as expected.
    #[error("migration {name}: {message}")]
    Migration {
        /// The file.
        name: String,
        /// What is wrong.
        message: String,
    },
}

/// A versioned migration: `V<version>__<name>.sql`.
#[derive(Debug, Clone)]
pub struct Migration {
    /// Applied in this order, once.
    pub version: u32,
    /// What it does.
    pub name: String,
    /// Statements, separated by `;` at the end of a line.
    pub sql: String,
}

impl Migration {
    /// The migrations in a folder, in version order; a file not named `V<n>__<name>.sql` or a
    /// version used twice is an error.
    pub fn from_dir(dir: &std::path::Path) -> Result<Vec<Migration>, ClickHouseError> {
        let error = |name: &str, message: String| ClickHouseError::Migration { name: name.to_owned(), message };
        let entries = std::fs::read_dir(dir).map_err(|e| error(&dir.display().to_string(), e.to_string()))?;
        let mut migrations: Vec<Migration> = Vec::new();
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if !file.ends_with(".sql") {
                continue;
            }
            let (version, name) = file
                .strip_prefix('V')
                .and_then(|rest| rest.trim_end_matches(".sql").split_once("__"))
                .and_then(|(v, name)| Some((v.parse::<u32>().ok()?, name.to_owned())))
                .ok_or_else(|| error(&file, "is not named V<version>__<name>.sql".to_owned()))?;
            if migrations.iter().any(|m| m.version == version) {
                return Err(error(&file, format!("version {version} is used twice")));
            }
            let sql = std::fs::read_to_string(entry.path()).map_err(|e| error(&file, e.to_string()))?;
            migrations.push(Migration { version, name, sql });
        }
        migrations.sort_by_key(|m| m.version);
        Ok(migrations)
    }

    /// Its statements: split at `;` ending a line, comments (`--`) and blank ones dropped.
    pub fn statements(&self) -> Vec<String> {
        let text: String =
            self.sql.lines().filter(|l| !l.trim_start().starts_with("--")).map(|l| format!("{l}\n")).collect();
        text.split(";\n").map(str::trim).filter(|s| !s.is_empty()).map(|s| s.trim_end_matches(';').to_owned()).collect()
    }
}

/// A client, with a runtime of its own for callers that are not async.
pub struct ClickHouse {
    client: clickhouse::Client,
    url: String,
    database: String,
    runtime: tokio::runtime::Runtime,
}

/// The table recording applied migrations.
const MIGRATIONS_TABLE: &str = "arus_schema_migrations";

#[derive(Debug, Row, serde::Deserialize)]
struct Applied {
    version: u32,
}

#[derive(Debug, Row, serde::Deserialize)]
struct Column {
    name: String,
    #[serde(rename = "type")]
    type_: String,
}

impl ClickHouse {
    /// A client of `url` (`http://host:8123`), database `database`; checks the server answers.
    pub fn connect(url: &str, database: &str) -> Result<Self, ClickHouseError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClickHouseError::Server { url: url.to_owned(), message: format!("no runtime: {e}") })?;
        let client = clickhouse::Client::default().with_url(url).with_validation(false);
        let this = ClickHouse { client: client.clone(), url: url.to_owned(), database: database.to_owned(), runtime };
        this.block(client.query("SELECT 1").execute())?;
        if database != "default" {
            if !database.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(ClickHouseError::Server {
                    url: url.to_owned(),
                    message: format!("database {database:?}: letters, digits and _ only"),
                });
            }
            this.block(client.query(&format!("CREATE DATABASE IF NOT EXISTS {database}")).execute())?;
        }
        Ok(ClickHouse { client: client.with_database(database), ..this })
    }

    /// A new async client of the same server and database, for callers on a runtime of their
    /// own (the gateway): its connections are made on that runtime, not on this one's.
    pub fn client(&self) -> clickhouse::Client {
        clickhouse::Client::default().with_url(&self.url).with_validation(false).with_database(self.database.clone())
    }

    fn block<T>(&self, future: impl Future<Output = clickhouse::error::Result<T>>) -> Result<T, ClickHouseError> {
        self.runtime
            .block_on(future)
            .map_err(|e| ClickHouseError::Server { url: self.url.clone(), message: e.to_string() })
    }

    /// Runs a statement.
    pub fn execute(&self, sql: &str) -> Result<(), ClickHouseError> {
        self.block(self.client.query(sql).execute())
    }

    /// Runs a statement; `binds` replace its `?` in order, escaped by the client.
    pub fn run(&self, sql: &str, binds: &[&str]) -> Result<(), ClickHouseError> {
        let mut query = self.client.query(sql);
        for bind in binds {
            query = query.bind(*bind);
        }
        self.block(query.execute())
    }

    /// Rows of a query; `binds` replace its `?` in order, escaped by the client.
    pub fn fetch<T>(&self, sql: &str, binds: &[&str]) -> Result<Vec<T>, ClickHouseError>
    where
        T: Row + DeserializeOwned + for<'b> Row<Value<'b> = T> + 'static,
    {
        let mut query = self.client.query(sql);
        for bind in binds {
            query = query.bind(*bind);
        }
        self.block(query.fetch_all::<T>())
    }

    /// Applies the migrations not applied yet, in order, recording each; the versions it
    /// applied. Running it again applies nothing.
    pub fn migrate(&self, migrations: &[Migration]) -> Result<Vec<u32>, ClickHouseError> {
        self.execute(&format!(
            "CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (version UInt32, name String, applied_at DateTime) \
             ENGINE = TinyLog"
        ))?;
        let applied: Vec<Applied> = self.fetch(&format!("SELECT version FROM {MIGRATIONS_TABLE}"), &[])?;
        let mut done = Vec::new();
        for migration in migrations {
            if applied.iter().any(|a| a.version == migration.version) {
                continue;
            }
            for statement in migration.statements() {
                self.execute(&statement).map_err(|e| ClickHouseError::Migration {
                    name: format!("V{}__{}", migration.version, migration.name),
                    message: e.to_string(),
                })?;
            }
            let record = self
                .client
                .query(&format!("INSERT INTO {MIGRATIONS_TABLE} (version, name, applied_at) VALUES (?, ?, now())"))
                .bind(migration.version)
                .bind(migration.name.as_str());
            self.block(record.execute())?;
            done.push(migration.version);
        }
        Ok(done)
    }

    /// Checks `table` has exactly `columns` (name and ClickHouse type) in that order, as a
    /// RowBinary row of them is written; an error names the first column that differs.
    pub fn check_columns(&self, table: &str, columns: &[(&str, &str)]) -> Result<(), ClickHouseError> {
        let found: Vec<Column> = self.fetch(
            "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = ?",
            &[table],
        )?;
        let schema = |message: String| ClickHouseError::Schema { table: table.to_owned(), message };
        if found.is_empty() {
            return Err(schema("no such table (run `arus clickhouse migrate`)".to_owned()));
        }
        for (i, (name, type_)) in columns.iter().enumerate() {
            match found.get(i) {
                Some(c) if c.name == *name && c.type_ == *type_ => {}
                Some(c) => {
                    return Err(schema(format!(
                        "column {} is {} {}, the row writes {name} {type_}",
                        i + 1,
                        c.name,
                        c.type_
                    )));
                }
                None => return Err(schema(format!("has no column {name} ({type_})"))),
            }
        }
        if let Some(extra) = found.get(columns.len()) {
            return Err(schema(format!("has a column the row does not write: {} {}", extra.name, extra.type_)));
        }
        Ok(())
    }

    /// Inserts `rows` into `table` in one statement, retried with backoff (0.1 s doubling to
    /// 5 s, `attempts` in all) when it fails.
    pub fn insert<T>(&self, table: &str, rows: &[T], attempts: u32) -> Result<(), ClickHouseError>
    where
        T: Row + Serialize + for<'b> Row<Value<'b> = T> + 'static,
    {
        let mut wait = Duration::from_millis(100);
        let mut attempt = 1;
        loop {
            let result = self.block(async {
                let mut insert = self.client.insert::<T>(table).await?;
                for row in rows {
                    insert.write(row).await?;
                }
                insert.end().await
            });
            match result {
                Ok(()) => return Ok(()),
                Err(error) if attempt >= attempts => return Err(error),
                Err(_) => {
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(5));
                    attempt += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_at_semicolons_ending_lines() {
        let migration = Migration {
            version: 1,
            name: "t".to_owned(),
            sql: "-- a comment\nCREATE TABLE a (x String DEFAULT ';')\nENGINE = TinyLog;\n\nCREATE TABLE b (y UInt8) ENGINE = TinyLog;\n".to_owned(),
        };
        assert_eq!(
            migration.statements(),
            vec![
                "CREATE TABLE a (x String DEFAULT ';')\nENGINE = TinyLog",
                "CREATE TABLE b (y UInt8) ENGINE = TinyLog"
            ]
        );
    }

    #[test]
    fn migration_files_are_named_by_version() {
        let dir = tempfile::tempdir().expect("a folder");
        std::fs::write(dir.path().join("V2__second.sql"), "SELECT 2;").expect("write");
        std::fs::write(dir.path().join("V1__first.sql"), "SELECT 1;").expect("write");
        let found = Migration::from_dir(dir.path()).expect("migrations");
        assert_eq!(
            found.iter().map(|m| (m.version, m.name.as_str())).collect::<Vec<_>>(),
            vec![(1, "first"), (2, "second")]
        );
        std::fs::write(dir.path().join("first.sql"), "SELECT 3;").expect("write");
        let err = Migration::from_dir(dir.path()).expect_err("a badly named file");
        assert!(err.to_string().contains("first.sql") && err.to_string().contains("V<version>"), "{err}");
    }
}
