//! The shared index: a PostgreSQL database, one schema per cluster ([`ClusterName::pg_schema`]) so deployments
//! sharing a server never see each other's rows. Versioned migrations run in one transaction under an advisory
//! lock, so several servers starting at once upgrade the schema exactly once.
//!
//! The synchronous client drives a runtime of its own, which must not run inside the server's, so it lives on a
//! thread of its own and callers wait for its answer (bounded by [`CALL_TIMEOUT`]; the server bounds each statement
//! too). A connection that dropped (the database restarted) is opened again and the call retried once.
//!
//! A job stores at most one entry of each status: a unique index on `(job_id, status)` makes a second insert a
//! no-op, also when two workers race with the same redelivered job.

use std::sync::mpsc;
use std::time::Duration;

use postgres::config::Host;
use postgres::{Client, Config, NoTls};

use super::index::{IdAndMetadata, IndexRow, Inserted, MeshIndex, Status};
use super::{GalleryError, Result};
use crate::cluster::ClusterName;

/// Longest wait for a new connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a statement may run on the server.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest a caller waits for one call, reconnect and retry included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Advisory-lock key that serialises migrations across servers.
const MIGRATION_LOCK: i64 = 0x5f3d_0001;

/// The schema's migrations in order (version = position + 1); `{s}` is the quoted schema. Never edit one that
/// shipped: append a new one.
const MIGRATIONS: &[&str] = &["
CREATE TABLE {s}.meshes (
    id           TEXT PRIMARY KEY,
    created_at   TEXT NOT NULL,
    parent_id    TEXT,
    status       TEXT NOT NULL,
    vertex_count BIGINT NOT NULL,
    face_count   BIGINT NOT NULL,
    total_ms     DOUBLE PRECISION NOT NULL,
    params       TEXT NOT NULL,
    metadata     TEXT NOT NULL,
    job_id       TEXT
);
CREATE INDEX meshes_parent ON {s}.meshes (parent_id);
CREATE INDEX meshes_listed ON {s}.meshes (status, id);
CREATE UNIQUE INDEX meshes_job ON {s}.meshes (job_id, status) WHERE job_id IS NOT NULL;
"];

type Call = Box<dyn FnOnce(&mut Session) + Send>;
type PgResult<T> = std::result::Result<T, postgres::Error>;

/// The connection thread's state.
struct Session {
    config: Config,
    client: Option<Client>,
}

impl Session {
    fn client(&mut self) -> PgResult<&mut Client> {
        let client = match self.client.take() {
            Some(c) if !c.is_closed() => c,
            _ => self.config.connect(NoTls)?,
        };
        Ok(self.client.insert(client))
    }

    fn run<T>(&mut self, f: &dyn Fn(&mut Client) -> PgResult<T>) -> PgResult<T> {
        match f(self.client()?) {
            Err(e) if e.is_closed() || self.client.as_ref().is_some_and(Client::is_closed) => {
                tracing::warn!(error = %e, "the PostgreSQL connection dropped; reconnecting");
                self.client = None;
                f(self.client()?)
            }
            r => r,
        }
    }
}

/// The PostgreSQL index of one cluster.
pub struct PgIndex {
    calls: mpsc::Sender<Call>,
    /// The quoted schema name.
    schema: String,
    target: String,
}

impl std::fmt::Debug for PgIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl PgIndex {
    /// Connects to `url` (a `postgres://` URL or a `key=value` string), creates or upgrades the cluster's schema.
    pub fn open(url: &str, cluster: &ClusterName) -> Result<Self> {
        let index = Self::connect(url, cluster)?;
        index.migrate()?;
        Ok(index)
    }

    /// Removes a cluster's schema with everything in it (a deployment taken down; the tests' clean-up), whatever
    /// its version.
    pub fn drop_cluster(url: &str, cluster: &ClusterName) -> Result<()> {
        Self::connect(url, cluster)?.call(|c, s| c.batch_execute(&format!("DROP SCHEMA IF EXISTS {s} CASCADE")))
    }

    /// Starts the connection thread (the first call connects).
    fn connect(url: &str, cluster: &ClusterName) -> Result<Self> {
        let mut config: Config = url.parse()?;
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .application_name("sf3d")
            .options(&format!("-c statement_timeout={}", STATEMENT_TIMEOUT.as_millis()));
        let target = format!("PostgreSQL {}, schema {}", describe_target(&config), cluster.pg_schema());
        let (calls, queue) = mpsc::channel::<Call>();
        std::thread::Builder::new()
            .name("sf3d-postgres".into())
            .spawn(move || {
                let mut session = Session { config, client: None };
                for call in queue {
                    call(&mut session);
                }
            })
            .map_err(|e| GalleryError::Unavailable(format!("cannot start the PostgreSQL thread: {e}")))?;
        Ok(Self { calls, schema: format!("\"{}\"", cluster.pg_schema()), target })
    }

    /// Runs `f` with the connection and the quoted schema on the connection thread and waits for its result.
    fn call<T: Send + 'static>(&self, f: impl Fn(&mut Client, &str) -> PgResult<T> + Send + 'static) -> Result<T> {
        let (reply, answer) = mpsc::sync_channel(1);
        let schema = self.schema.clone();
        let call: Call = Box::new(move |session: &mut Session| {
            let _ = reply.send(session.run(&|c| f(c, &schema)));
        });
        self.calls.send(call).map_err(|_| GalleryError::Unavailable("the PostgreSQL thread has stopped".into()))?;
        match answer.recv_timeout(CALL_TIMEOUT) {
            Ok(r) => Ok(r?),
            Err(_) => Err(GalleryError::Unavailable(format!(
                "{} did not answer within {} s",
                self.target,
                CALL_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Applies the migrations this schema lacks; refuses a schema newer than this program.
    fn migrate(&self) -> Result<()> {
        let version = self.call(|c, s| {
            let mut tx = c.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
            tx.batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {s};
                 CREATE TABLE IF NOT EXISTS {s}.migrations (
                     version    INTEGER PRIMARY KEY,
                     applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
                 );"
            ))?;
            let done: i32 = tx.query_one(&format!("SELECT COALESCE(MAX(version), 0) FROM {s}.migrations"), &[])?.get(0);
            let done = usize::try_from(done).unwrap_or(0);
            for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
                tx.batch_execute(&sql.replace("{s}", s))?;
                let version = i32::try_from(i + 1).unwrap_or(i32::MAX);
                tx.execute(&format!("INSERT INTO {s}.migrations (version) VALUES ($1)"), &[&version])?;
            }
            tx.commit()?;
            Ok(done)
        })?;
        if version > MIGRATIONS.len() {
            return Err(GalleryError::Schema(format!(
                "{} is at version {version}, newer than this program knows ({}): upgrade sf3d",
                self.target,
                MIGRATIONS.len()
            )));
        }
        Ok(())
    }
}

/// `user@host:port/db` of a configuration (never its password).
fn describe_target(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().map(|u| format!("{u}@")).unwrap_or_default();
    format!("{user}{host}:{port}/{}", config.get_dbname().unwrap_or(""))
}

impl MeshIndex for PgIndex {
    fn contains(&self, id: &str) -> Result<bool> {
        let id = id.to_string();
        self.call(move |c, s| Ok(c.query_opt(&format!("SELECT 1 FROM {s}.meshes WHERE id = $1"), &[&id])?.is_some()))
    }

    fn insert(&self, row: &IndexRow) -> Result<Inserted> {
        let row = row.clone();
        let n = self.call(move |c, s| {
            c.execute(
                &format!(
                    "INSERT INTO {s}.meshes (id, created_at, parent_id, status, vertex_count, face_count, total_ms,
                                             params, metadata, job_id)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                     ON CONFLICT (job_id, status) WHERE job_id IS NOT NULL DO NOTHING"
                ),
                &[
                    &row.id,
                    &row.created_at,
                    &row.parent_id,
                    &row.status.as_str(),
                    &row.vertex_count,
                    &row.face_count,
                    &row.total_ms,
                    &row.params,
                    &row.metadata,
                    &row.job_id,
                ],
            )
        })?;
        Ok(if n == 1 { Inserted::Stored } else { Inserted::JobAlreadyStored })
    }

    fn ids_with_status(&self, status: Status) -> Result<Vec<String>> {
        self.call(move |c, s| {
            let rows = c.query(&format!("SELECT id FROM {s}.meshes WHERE status = $1"), &[&status.as_str()])?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn find_by_job(&self, job_id: &str, status: Status) -> Result<Option<IdAndMetadata>> {
        let job_id = job_id.to_string();
        self.call(move |c, s| {
            let row = c.query_opt(
                &format!("SELECT id, metadata FROM {s}.meshes WHERE job_id = $1 AND status = $2 ORDER BY id LIMIT 1"),
                &[&job_id, &status.as_str()],
            )?;
            Ok(row.map(|r| (r.get(0), r.get(1))))
        })
    }

    fn metadata(&self, id: &str) -> Result<Option<String>> {
        let id = id.to_string();
        self.call(move |c, s| {
            Ok(c.query_opt(&format!("SELECT metadata FROM {s}.meshes WHERE id = $1"), &[&id])?.map(|r| r.get(0)))
        })
    }

    fn page(&self, before: Option<&str>, limit: usize) -> Result<Vec<IdAndMetadata>> {
        let before = before.map(str::to_string);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.call(move |c, s| {
            let rows = c.query(
                &format!(
                    "SELECT id, metadata FROM {s}.meshes WHERE status = $1 AND ($2::TEXT IS NULL OR id < $2)
                     ORDER BY id DESC LIMIT $3"
                ),
                &[&Status::Final.as_str(), &before, &limit],
            )?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn delete(&self, id: &str) -> Result<bool> {
        let id = id.to_string();
        self.call(move |c, s| Ok(c.execute(&format!("DELETE FROM {s}.meshes WHERE id = $1"), &[&id])? > 0))
    }

    fn count(&self) -> Result<u64> {
        self.call(|c, s| {
            let n: i64 = c
                .query_one(&format!("SELECT COUNT(*) FROM {s}.meshes WHERE status = $1"), &[&Status::Final.as_str()])?
                .get(0);
            Ok(n.max(0) as u64)
        })
    }

    fn flush(&self) -> Result<()> {
        // Every statement commits durably on the server: nothing is held back here.
        Ok(())
    }

    fn describe(&self) -> String {
        self.target.clone()
    }

    fn shared(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gallery::tests::{new_mesh, temp_dir};
    use crate::gallery::{Gallery, new_id};
    use crate::test_services::TestCluster;

    #[test]
    fn servers_starting_together_migrate_once_and_share_rows() {
        let Some(t) = TestCluster::for_test("together") else { return };
        let opened: Vec<PgIndex> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4).map(|_| s.spawn(|| PgIndex::open(&t.url, &t.cluster))).collect();
            handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect()
        });
        let versions = opened[0]
            .call(|c, s| Ok(c.query_one(&format!("SELECT COUNT(*) FROM {s}.migrations"), &[])?.get::<_, i64>(0)))
            .unwrap();
        assert_eq!(versions, MIGRATIONS.len() as i64);
        // Two galleries (two web tiers) over one index see each other's rows.
        let (da, db) = (temp_dir("pg-share-a"), temp_dir("pg-share-b"));
        let a = Gallery::open_with(&da, &t.gallery()).unwrap();
        let b = Gallery::open_with(&db, &t.gallery()).unwrap();
        let id = new_id();
        a.insert(&new_mesh(&id)).unwrap();
        assert_eq!(b.count().unwrap(), 1);
        drop((a, b, opened));
        std::fs::remove_dir_all(da).ok();
        std::fs::remove_dir_all(db).ok();
    }

    #[test]
    fn a_connection_the_server_ended_is_opened_again() {
        let Some(t) = TestCluster::for_test("reconnect") else { return };
        let i = PgIndex::open(&t.url, &t.cluster).unwrap();
        let pid = |i: &PgIndex| i.call(|c, _| Ok(c.query_one("SELECT pg_backend_pid()", &[])?.get::<_, i32>(0)));
        let before = pid(&i).unwrap();
        // Another session ends ours, as a restart of the database would.
        let mut admin = postgres::Client::connect(&t.url, NoTls).unwrap();
        admin.execute("SELECT pg_terminate_backend($1)", &[&before]).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(i.count().unwrap(), 0);
        assert_ne!(pid(&i).unwrap(), before);
    }

    #[test]
    fn a_schema_newer_than_the_program_is_refused() {
        let Some(t) = TestCluster::for_test("newer") else { return };
        let i = PgIndex::open(&t.url, &t.cluster).unwrap();
        i.call(|c, s| c.execute(&format!("INSERT INTO {s}.migrations (version) VALUES (999)"), &[])).unwrap();
        let err = PgIndex::open(&t.url, &t.cluster).unwrap_err().to_string();
        assert!(err.contains("version 999") && err.contains("upgrade sf3d"), "{err}");
    }

    #[test]
    fn unreachable_servers_and_bad_urls_fail_clearly_without_the_password() {
        let cluster = ClusterName::default();
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("postgres://sf3d:hunter2secret@127.0.0.1:{port}/gallery");
        let started = std::time::Instant::now();
        let err = PgIndex::open(&url, &cluster).unwrap_err().to_string();
        assert!(started.elapsed() < CALL_TIMEOUT, "{err}");
        assert!(err.contains("PostgreSQL") && !err.contains("hunter2"), "{err}");
        let err = PgIndex::open("postgres://x:y@host:notaport/db", &cluster).unwrap_err().to_string();
        assert!(err.contains("PostgreSQL") && !err.contains("y@"), "{err}");
        let config: Config = url.parse().unwrap();
        assert_eq!(describe_target(&config), format!("sf3d@127.0.0.1:{port}/gallery"));
    }
}
