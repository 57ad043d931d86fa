//! The shared services the tests use (PostgreSQL now), found the same way by the unit tests and the end-to-end
//! tests: at `SF3D_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/test`, which the CI machines start).
//! When a service does not answer, the tests that need it say so loudly and skip — unless
//! `SF3D_REQUIRE_SERVICES=1` (set by `cargo xtask test`), where that is a failure.

use crate::cluster::ClusterName;
use crate::gallery::IndexConfig;
use crate::gallery::postgres::PgIndex;

/// Where the tests find PostgreSQL.
pub const TEST_POSTGRES_ENV: &str = "SF3D_TEST_POSTGRES";
/// `1` makes a missing service fail the tests instead of skipping them.
pub const REQUIRE_SERVICES_ENV: &str = "SF3D_REQUIRE_SERVICES";
/// The PostgreSQL of the CI machines.
pub const DEFAULT_TEST_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The test PostgreSQL's URL when it answers; `None` after a loud message when it does not and is not required.
///
/// # Panics
/// When it does not answer and `SF3D_REQUIRE_SERVICES=1`.
pub fn test_postgres() -> Option<String> {
    let url = std::env::var(TEST_POSTGRES_ENV).unwrap_or_else(|_| DEFAULT_TEST_POSTGRES.to_string());
    // On a thread of its own: the synchronous client must not run inside an async test's runtime.
    let probe = url.clone();
    let reached = std::thread::spawn(move || {
        let mut config: ::postgres::Config = probe.parse().map_err(|e: ::postgres::Error| e.to_string())?;
        config.connect_timeout(std::time::Duration::from_secs(3));
        config.connect(::postgres::NoTls).map(drop).map_err(|e| e.to_string())
    })
    .join()
    .unwrap_or_else(|_| Err("the probe panicked".into()));
    match reached {
        Ok(()) => Some(url),
        Err(e) if std::env::var(REQUIRE_SERVICES_ENV).is_ok_and(|v| v == "1") => {
            panic!(
                "{REQUIRE_SERVICES_ENV}=1 but PostgreSQL ({TEST_POSTGRES_ENV}, default {DEFAULT_TEST_POSTGRES}) does not answer: {e}"
            )
        }
        Err(e) => {
            eprintln!(
                "\n*** SKIPPING a PostgreSQL test: {e} (set {TEST_POSTGRES_ENV}, or {REQUIRE_SERVICES_ENV}=1 to fail) ***\n"
            );
            None
        }
    }
}

/// A cluster of its own for one test, so its own PostgreSQL schema, dropped when this goes away.
pub struct TestCluster {
    /// The PostgreSQL URL.
    pub url: String,
    /// The test's cluster.
    pub cluster: ClusterName,
}

impl TestCluster {
    /// A cluster named after the process and `test` (lowercase letters, digits and `-`), starting empty.
    ///
    /// # Panics
    /// When `test` makes no valid cluster name.
    pub fn new(url: &str, test: &str) -> Self {
        let cluster: ClusterName = format!("t{}-{test}", std::process::id()).parse().unwrap_or_else(|e| panic!("{e}"));
        let t = Self { url: url.to_string(), cluster };
        t.drop_schema();
        t
    }

    /// A cluster for `test` when the test PostgreSQL answers (see [`test_postgres`]).
    pub fn for_test(test: &str) -> Option<Self> {
        test_postgres().map(|url| Self::new(&url, test))
    }

    /// The index configuration of this cluster.
    pub fn index(&self) -> IndexConfig {
        IndexConfig::Postgres { url: self.url.clone(), cluster: self.cluster.clone() }
    }

    fn drop_schema(&self) {
        if let Err(e) = PgIndex::drop_cluster(&self.url, &self.cluster) {
            eprintln!("cannot drop the test schema of {}: {e}", self.cluster);
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.drop_schema();
    }
}
