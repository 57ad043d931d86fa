//! The shared services the tests use, found the same way by the unit tests and the end-to-end tests: PostgreSQL
//! at `SF3D_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/test`) and NATS with JetStream at
//! `SF3D_TEST_NATS` (default `nats://127.0.0.1:4222`), which the CI machines start. When a service does not
//! answer, the tests that need it say so loudly and skip — unless `SF3D_REQUIRE_SERVICES=1` (set by
//! `cargo xtask test`), where that is a failure.

use std::time::Duration;

use crate::cluster::ClusterName;
use crate::gallery::nats::NatsFiles;
use crate::gallery::postgres::PgIndex;
use crate::gallery::{FilesConfig, GalleryConfig, IndexConfig};

/// Where the tests find PostgreSQL.
pub const TEST_POSTGRES_ENV: &str = "SF3D_TEST_POSTGRES";
/// Where the tests find NATS.
pub const TEST_NATS_ENV: &str = "SF3D_TEST_NATS";
/// `1` makes a missing service fail the tests instead of skipping them.
pub const REQUIRE_SERVICES_ENV: &str = "SF3D_REQUIRE_SERVICES";
/// The PostgreSQL of the CI machines.
pub const DEFAULT_TEST_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";
/// The NATS of the CI machines.
pub const DEFAULT_TEST_NATS: &str = "nats://127.0.0.1:4222";
/// Longest wait for a service's answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The URL of a service from `env` (or `default`) when `probe` reaches it; else `None` after a loud message, or a
/// panic under `SF3D_REQUIRE_SERVICES=1`.
fn find(service: &str, env: &str, default: &str, probe: fn(String) -> Result<(), String>) -> Option<String> {
    let url = std::env::var(env).unwrap_or_else(|_| default.to_string());
    // On a thread of its own: the probes run their own runtimes, which must not start inside an async test's.
    let u = url.clone();
    let reached = std::thread::spawn(move || probe(u)).join().unwrap_or_else(|_| Err("the probe panicked".into()));
    match reached {
        Ok(()) => Some(url),
        Err(e) if std::env::var(REQUIRE_SERVICES_ENV).is_ok_and(|v| v == "1") => {
            panic!("{REQUIRE_SERVICES_ENV}=1 but {service} ({env}, default {default}) does not answer: {e}")
        }
        Err(e) => {
            eprintln!("\n*** SKIPPING a {service} test: {e} (set {env}, or {REQUIRE_SERVICES_ENV}=1 to fail) ***\n");
            None
        }
    }
}

/// The test PostgreSQL's URL when it answers (see the module's comment).
///
/// # Panics
/// When it does not answer and `SF3D_REQUIRE_SERVICES=1`.
pub fn test_postgres() -> Option<String> {
    find("PostgreSQL", TEST_POSTGRES_ENV, DEFAULT_TEST_POSTGRES, |url| {
        let mut config: ::postgres::Config = url.parse().map_err(|e: ::postgres::Error| e.to_string())?;
        config.connect_timeout(PROBE_TIMEOUT);
        config.connect(::postgres::NoTls).map(drop).map_err(|e| e.to_string())
    })
}

/// The test NATS's URL when it answers with JetStream (see the module's comment).
///
/// # Panics
/// When it does not answer and `SF3D_REQUIRE_SERVICES=1`.
pub fn test_nats() -> Option<String> {
    find("NATS JetStream", TEST_NATS_ENV, DEFAULT_TEST_NATS, |url| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        rt.block_on(async {
            let client = async_nats::ConnectOptions::new()
                .connection_timeout(PROBE_TIMEOUT)
                .connect(url.as_str())
                .await
                .map_err(|e| e.to_string())?;
            if client.server_info().jetstream { Ok(()) } else { Err("the server runs without JetStream (-js)".into()) }
        })
    })
}

/// A cluster of its own for one test, so its own PostgreSQL schema and NATS bucket, removed when this goes away.
pub struct TestCluster {
    /// The PostgreSQL URL.
    pub url: String,
    /// The NATS URL, for a cluster that shares files.
    pub nats: Option<String>,
    /// The test's cluster.
    pub cluster: ClusterName,
}

impl TestCluster {
    fn new(url: &str, nats: Option<String>, test: &str) -> Self {
        let cluster: ClusterName = format!("t{}-{test}", std::process::id()).parse().unwrap_or_else(|e| panic!("{e}"));
        let t = Self { url: url.to_string(), nats, cluster };
        t.remove();
        t
    }

    /// A cluster for `test` (lowercase letters, digits and `-`) with a PostgreSQL index, when the test
    /// PostgreSQL answers (see [`test_postgres`]).
    ///
    /// # Panics
    /// When a service does not answer and `SF3D_REQUIRE_SERVICES=1`, or `test` makes no valid cluster name.
    pub fn for_test(test: &str) -> Option<Self> {
        test_postgres().map(|url| Self::new(&url, None, test))
    }

    /// Like [`Self::for_test`], with the files in NATS too, when both services answer.
    ///
    /// # Panics
    /// As [`Self::for_test`].
    pub fn shared_for_test(test: &str) -> Option<Self> {
        let url = test_postgres()?;
        let nats = test_nats()?;
        Some(Self::new(&url, Some(nats), test))
    }

    /// The index configuration of this cluster.
    pub fn index(&self) -> IndexConfig {
        IndexConfig::Postgres { url: self.url.clone(), cluster: self.cluster.clone() }
    }

    /// Its gallery: the index in PostgreSQL, the files in NATS when it has NATS, else in the data folder.
    pub fn gallery(&self) -> GalleryConfig {
        let files = match &self.nats {
            Some(url) => FilesConfig::Nats { url: url.clone(), cluster: self.cluster.clone() },
            None => FilesConfig::Folder,
        };
        GalleryConfig { index: self.index(), files }
    }

    fn remove(&self) {
        if let Err(e) = PgIndex::drop_cluster(&self.url, &self.cluster) {
            eprintln!("cannot drop the test schema of {}: {e}", self.cluster);
        }
        if let Some(nats) = &self.nats {
            if let Err(e) = NatsFiles::drop_bucket(nats, &self.cluster) {
                eprintln!("cannot drop the test bucket of {}: {e}", self.cluster);
            }
            drop_jobs(nats, &self.cluster);
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Removes the job queue and board of `cluster` (absent ones are fine).
fn drop_jobs(url: &str, cluster: &ClusterName) {
    let (url, cluster) = (url.to_string(), cluster.clone());
    // On a thread of its own: this may run inside an async test's runtime.
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
        rt.block_on(async {
            let client = crate::cluster::connect(&url, PROBE_TIMEOUT).await.ok()?;
            let _ = crate::cluster::queue::JobQueue::remove(client.clone(), &cluster).await;
            let _ = crate::cluster::board::JobBoard::remove(client, &cluster).await;
            Some(())
        })
    })
    .join();
}

/// Where the tests find `nats-server` for servers of their own: `SF3D_TEST_NATS_SERVER`, else Debian's path.
pub const NATS_SERVER_ENV: &str = "SF3D_TEST_NATS_SERVER";
const DEFAULT_NATS_SERVER: &str = "/usr/sbin/nats-server";

/// A `nats-server -js` of a test's own, on a free loopback port with its store in a temp folder — for tests that
/// stop and restart it. Killed (and its folder removed) when this goes away.
pub struct OwnNatsServer {
    binary: std::path::PathBuf,
    port: u16,
    dir: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl OwnNatsServer {
    /// Starts one, or `None` after a loud message when `nats-server` is missing (a panic under
    /// `SF3D_REQUIRE_SERVICES=1`).
    ///
    /// # Panics
    /// When it cannot start, or is missing under `SF3D_REQUIRE_SERVICES=1`.
    pub fn start(test: &str) -> Option<Self> {
        let binary =
            std::path::PathBuf::from(std::env::var(NATS_SERVER_ENV).unwrap_or_else(|_| DEFAULT_NATS_SERVER.into()));
        if !binary.is_file() {
            let msg = format!("no nats-server at {} (set {NATS_SERVER_ENV})", binary.display());
            if std::env::var(REQUIRE_SERVICES_ENV).is_ok_and(|v| v == "1") {
                panic!("{REQUIRE_SERVICES_ENV}=1 but {msg}");
            }
            eprintln!("\n*** SKIPPING a NATS restart test: {msg} ***\n");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no free port: {e}"));
        let dir = std::env::temp_dir().join(format!("sf3d-nats-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut s = Self { binary, port, dir, child: None };
        s.restart();
        Some(s)
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with the same store, and waits until it accepts connections.
    ///
    /// # Panics
    /// When it does not start within 10 s.
    pub fn restart(&mut self) {
        self.kill();
        let child = std::process::Command::new(&self.binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "nats-server did not start on port {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for OwnNatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
