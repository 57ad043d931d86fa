//! The cross-site policy, checked before any route: which `Host` names the server answers to and which page
//! origins may drive it.
//!
//! A web page the user visits can send requests to `127.0.0.1:9299` or to a LAN address. Two checks keep it out:
//!
//! * **Host** (DNS rebinding): a page on `attacker.example` whose name is re-pointed at the server's address
//!   sends `Host: attacker.example`. Only loopback addresses, `localhost`, the address the connection came in on
//!   (a client that typed the server's IP) and the names given with `--allowed-host` are answered; `*` allows
//!   every name (behind a reverse proxy that checks it).
//! * **Origin** (cross-site requests): a browser marks every WebSocket handshake and every non-GET request with
//!   the page's origin. Such a request is refused unless the origin is the server's own (its host and port are
//!   the `Host` the request was sent to) or listed with `--cors-origin`. Requests without `Origin` come from
//!   scripts and command-line clients and pass (the API key is what guards them).
//!
//! Refusals are `403 forbidden` with one message naming what to change.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sf3d_shared::ErrorCode;

use crate::AppState;
use crate::error::ApiError;
use crate::routes::input::clip;

/// The local address a connection was accepted on, put into each request's extensions by [`crate::http`].
#[derive(Debug, Clone, Copy)]
pub struct LocalAddr(pub SocketAddr);

/// Which hosts and origins are allowed (`--allowed-host`, `--cors-origin`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SitePolicy {
    hosts: Vec<String>,
    any_host: bool,
    origins: Vec<String>,
    any_origin: bool,
}

impl SitePolicy {
    /// Checks the command-line lists. `*` as an origin needs an API key: without one, any page on the web could
    /// use the server.
    pub fn new(hosts: &[String], origins: &[String], has_key: bool) -> Result<Self, String> {
        let mut p = Self::default();
        for h in hosts {
            let h = h.trim();
            if h == "*" {
                p.any_host = true;
            } else if h.is_empty() || h.contains(['/', ':', ' ']) && h.parse::<IpAddr>().is_err() {
                return Err(format!(
                    "--allowed-host {h:?} is not a host name (give the name alone, e.g. `sf3d.lab.example`, or `*`)"
                ));
            } else if let Ok(IpAddr::V6(v6)) = h.parse::<IpAddr>() {
                p.hosts.push(format!("[{v6}]"));
            } else {
                p.hosts.push(normalise_host(h));
            }
        }
        for o in origins {
            let o = o.trim();
            if o == "*" {
                if !has_key {
                    return Err("--cors-origin '*' lets every web page use the server; it needs --api-key (or list \
                                the origins)"
                        .into());
                }
                p.any_origin = true;
            } else {
                p.origins.push(parse_origin(o).map_err(|e| format!("--cors-origin {o:?}: {e}"))?);
            }
        }
        Ok(p)
    }

    /// Whether every origin is allowed (`--cors-origin '*'`).
    pub fn any_origin(&self) -> bool {
        self.any_origin
    }

    /// The listed origins, normalised (`scheme://host[:port]`).
    pub fn origins(&self) -> &[String] {
        &self.origins
    }

    /// Whether a request with this `Host` value, arriving on `local`, is answered.
    pub fn host_allowed(&self, host: &str, local: Option<IpAddr>) -> bool {
        if self.any_host {
            return true;
        }
        let name = normalise_host(split_port(host).0);
        if name == "localhost" || self.hosts.contains(&name) {
            return true;
        }
        match name.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            Ok(ip) => ip.is_loopback() || Some(ip) == local || local.is_some_and(|l| same_v4(ip, l)),
            Err(_) => false,
        }
    }

    /// Whether a page at `origin` may send a request that was addressed to `host`.
    pub fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        if self.any_origin {
            return true;
        }
        let Ok(origin) = parse_origin(origin) else { return false };
        if self.origins.contains(&origin) {
            return true;
        }
        let Some(host) = host else { return false };
        let (scheme, authority) = origin.split_once("://").unwrap_or(("", &origin));
        authority == normalise_authority(host, scheme)
    }
}

/// An IPv4 address seen through an IPv4-mapped IPv6 socket.
fn same_v4(a: IpAddr, b: IpAddr) -> bool {
    let v4 = |ip: IpAddr| match ip {
        IpAddr::V4(v) => Some(v),
        IpAddr::V6(v) => v.to_ipv4_mapped(),
    };
    v4(a).is_some() && v4(a) == v4(b)
}

/// `host:port` → (`host`, `port`); bracketed IPv6 stays bracketed.
fn split_port(authority: &str) -> (&str, Option<&str>) {
    if authority.starts_with('[') {
        return match authority.find("]:") {
            Some(i) => (&authority[..=i], Some(&authority[i + 2..])),
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (authority, None),
    }
}

fn normalise_host(h: &str) -> String {
    h.trim_end_matches('.').to_ascii_lowercase()
}

/// `host[:port]` in lower case without the scheme's default port.
fn normalise_authority(authority: &str, scheme: &str) -> String {
    let (host, port) = split_port(authority);
    let host = normalise_host(host);
    match (scheme, port) {
        (_, None) | ("http", Some("80")) | ("https", Some("443")) => host,
        (_, Some(p)) => format!("{host}:{p}"),
    }
}

/// `scheme://host[:port]` normalised, or why it is not an origin.
fn parse_origin(o: &str) -> Result<String, String> {
    let (scheme, rest) = o.split_once("://").ok_or("an origin is scheme://host[:port], e.g. http://laptop.lan:8080")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(format!("scheme {scheme:?} is not http or https"));
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ', '*']) {
        return Err("an origin has no path, query, user or wildcard: scheme://host[:port]".into());
    }
    if let (_, Some(port)) = split_port(authority)
        && port.parse::<u16>().is_err()
    {
        return Err(format!("port {port:?} is not a number"));
    }
    Ok(format!("{scheme}://{}", normalise_authority(authority, &scheme)))
}

fn quote(v: &str) -> String {
    format!("\"{}\"", clip(v))
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers.get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The middleware: Host on every request, Origin on WebSocket handshakes and on everything but GET/HEAD/OPTIONS.
pub(crate) async fn check_site(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let policy = &state.config.site;
    let headers = req.headers();
    let host = headers.get(header::HOST).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let local = req.extensions().get::<LocalAddr>().map(|l| l.0.ip());
    // Every HTTP/1.1 request names its host; one that came over the network without it is refused too
    // (requests handed to the router in-process have no local address and no Host).
    if host.is_none() && local.is_some() {
        return ApiError::new(ErrorCode::BadRequest, "the request has no Host header").into_response();
    }
    if let Some(h) = host
        && !policy.host_allowed(h, local)
    {
        tracing::info!(host = %quote(h), "refused a request for a foreign host name");
        return ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "this server does not answer to the host name {} (DNS-rebinding protection); its operator can allow \
                 it with --allowed-host",
                quote(h)
            ),
        )
        .into_response();
    }
    let needs_origin =
        is_websocket_upgrade(headers) || !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if needs_origin && let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("\u{fffd}");
        if !policy.origin_allowed(origin, host) {
            tracing::info!(origin = %quote(origin), path = req.uri().path(), "refused a cross-site request");
            return ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "requests from pages at {} are not allowed (cross-site protection); open the UI at the server's \
                     own address, or its operator can allow the origin with --cors-origin",
                    quote(origin)
                ),
            )
            .into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(hosts: &[&str], origins: &[&str]) -> SitePolicy {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        SitePolicy::new(&s(hosts), &s(origins), false).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn hosts_loopback_local_address_and_listed_names() {
        let p = policy(&["sf3d.lab.example"], &[]);
        let lan: IpAddr = [192, 168, 1, 5].into();
        for ok in ["127.0.0.1:9299", "localhost:9299", "LOCALHOST", "[::1]:9299", "sf3d.lab.example:9299"] {
            assert!(p.host_allowed(ok, None), "{ok}");
        }
        assert!(p.host_allowed("192.168.1.5:9299", Some(lan)));
        assert!(!p.host_allowed("192.168.1.6:9299", Some(lan)));
        assert!(!p.host_allowed("attacker.example:9299", Some(lan)));
        assert!(!p.host_allowed("localhost.attacker.example", None));
        assert!(!p.host_allowed("", None));
        assert!(policy(&["*"], &[]).host_allowed("anything.example", None));
    }

    #[test]
    fn origins_same_origin_or_listed() {
        let p = policy(&[], &["http://laptop.lan:8080/", "HTTPS://Tools.Example"]);
        assert!(p.origin_allowed("http://127.0.0.1:9299", Some("127.0.0.1:9299")));
        assert!(p.origin_allowed("http://example.lan", Some("example.lan:80")));
        assert!(!p.origin_allowed("http://127.0.0.1:9300", Some("127.0.0.1:9299")));
        assert!(!p.origin_allowed("http://evil.example", Some("127.0.0.1:9299")));
        assert!(!p.origin_allowed("null", Some("127.0.0.1:9299")));
        assert!(p.origin_allowed("http://laptop.lan:8080", Some("127.0.0.1:9299")));
        assert!(p.origin_allowed("https://tools.example:443", None));
        assert!(!p.origin_allowed("http://tools.example", None));
    }

    #[test]
    fn bad_lists_are_refused_with_the_option_named() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let err = |h: &[&str], o: &[&str], key| SitePolicy::new(&s(h), &s(o), key).err().unwrap_or_default();
        assert!(err(&[], &["*"], false).contains("--cors-origin '*'"));
        assert!(SitePolicy::new(&[], &s(&["*"]), true).is_ok_and(|p| p.any_origin()));
        assert!(err(&[], &["laptop.lan"], false).contains("scheme://host"));
        assert!(err(&[], &["http://laptop.lan/app"], false).contains("no path"));
        assert!(err(&[], &["ftp://x"], false).contains("scheme"));
        assert!(err(&["http://x"], &[], false).contains("--allowed-host"));
    }
}
