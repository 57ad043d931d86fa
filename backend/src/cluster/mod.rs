//! Several processes as one service. [`ClusterName`] is the name of one deployment that shares services with
//! others (`--cluster NAME`): every name it creates in a shared service is derived from it here, so two
//! deployments (or two parallel tests) on one PostgreSQL or NATS server never see each other's. [`queue`] is the
//! job queue its web tiers and workers share, [`board`] the rest of what they tell each other about jobs,
//! [`tier`] the web tier's side and [`node`] a worker process's.

pub mod board;
pub mod bridge;
pub mod node;
pub mod queue;
pub mod tier;
pub mod wire;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Connects to the NATS server at `url` (`nats://[user:password@]host:port`), waiting at most `timeout` for the
/// first connection; the client reconnects by itself afterwards. Errors name the server without its password.
pub async fn connect(url: &str, timeout: Duration) -> Result<async_nats::Client, String> {
    async_nats::ConnectOptions::new()
        .name("sf3d")
        .connection_timeout(timeout)
        .connect(url)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", redacted_url(url)))
}

/// Longest cluster name: the derived PostgreSQL schema (`sf3d_` + name) stays far below its 63-byte limit.
pub const MAX_CLUSTER_NAME: usize = 40;

/// The default cluster name.
pub const DEFAULT_CLUSTER: &str = "default";

/// A checked cluster name: 1–[`MAX_CLUSTER_NAME`] lowercase ASCII letters, digits, `-` and `_`, starting with a
/// letter or digit — safe in a PostgreSQL identifier, a NATS subject token and a bucket name alike.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClusterName(String);

impl ClusterName {
    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The PostgreSQL schema that holds this cluster's tables: `sf3d_` + the name with `-` as `_`.
    pub fn pg_schema(&self) -> String {
        format!("sf3d_{}", self.0.replace('-', "_"))
    }

    /// The name of one of this cluster's NATS buckets or streams: `sf3d-NAME-WHAT`.
    pub fn bucket(&self, what: &str) -> String {
        format!("sf3d-{}-{what}", self.0)
    }

    /// One of this cluster's NATS subjects: `sf3d.NAME.WHAT`.
    pub fn subject(&self, what: &str) -> String {
        format!("sf3d.{}.{what}", self.0)
    }
}

/// A service URL fit for logs: `scheme://host:port…` without the `user:password@` part.
pub fn redacted_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (authority, path) = rest.split_once('/').map_or((rest, None), |(a, p)| (a, Some(p)));
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let mut out = if scheme.is_empty() { host.to_string() } else { format!("{scheme}://{host}") };
    if let Some(p) = path {
        out.push('/');
        out.push_str(p.split('?').next().unwrap_or(""));
    }
    out
}

impl Default for ClusterName {
    fn default() -> Self {
        Self(DEFAULT_CLUSTER.to_string())
    }
}

impl fmt::Display for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ClusterName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= MAX_CLUSTER_NAME
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            && s.as_bytes()[0].is_ascii_alphanumeric();
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(format!(
                "cluster name {s:?}: give 1 to {MAX_CLUSTER_NAME} lowercase letters, digits, '-' or '_', starting \
                 with a letter or digit"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_map_to_a_schema() {
        let c: ClusterName = "lab-2".parse().unwrap();
        assert_eq!(c.pg_schema(), "sf3d_lab_2");
        assert_eq!(ClusterName::default().pg_schema(), "sf3d_default");
        for bad in ["", "Lab", "-x", "a b", "a.b", "a\"b", "é", &"x".repeat(MAX_CLUSTER_NAME + 1)] {
            assert!(bad.parse::<ClusterName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_lose_their_credentials_for_logs() {
        assert_eq!(redacted_url("nats://user:s3cret@nats.lab:4222"), "nats://nats.lab:4222");
        assert_eq!(redacted_url("postgres://a:b@db/sf3d?password=x"), "postgres://db/sf3d");
        assert_eq!(redacted_url("127.0.0.1:4222"), "127.0.0.1:4222");
        assert_eq!(ClusterName::default().bucket("meshes"), "sf3d-default-meshes");
    }
}
