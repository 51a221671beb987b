//! `http_get`: reads a page or an API under the URL prefixes the team allow-listed
//! (`toolsets.http.allow`). Each URL, and each redirect hop (at most 5), must be under a listed
//! prefix (same scheme, host and port; the path under the prefix's path), and must not resolve to a
//! loopback, private or link-local address unless `toolsets.http.allow_private` is true; the
//! connection goes to the address that was checked. Bodies are read up to 256 KiB.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::Url;
use serde_json::{Value, json};

use crate::agent::tools::Tool;
use crate::messages::ToolSpec;

const MAX_REDIRECTS: usize = 5;
const MAX_BODY: usize = 256 * 1024;
const TIMEOUT: Duration = Duration::from_secs(15);

pub struct HttpGet {
    allow: Vec<Url>,
    allow_private: bool,
}

impl HttpGet {
    /// The tool for `toolsets.http`; `None` without an allow-list (it could reach nothing).
    pub fn from_config(v: Option<&Value>) -> Option<Self> {
        let v = v?;
        let allow: Vec<Url> = v
            .get("allow")?
            .as_array()?
            .iter()
            .filter_map(|p| Url::parse(p.as_str()?).ok())
            .collect();
        (!allow.is_empty()).then(|| Self {
            allow,
            allow_private: v
                .get("allow_private")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }

    fn allowed(&self, url: &Url) -> bool {
        self.allow.iter().any(|p| {
            p.scheme() == url.scheme()
                && p.host_str() == url.host_str()
                && p.port_or_known_default() == url.port_or_known_default()
                && url.path().starts_with(p.path())
        })
    }

    /// The address to connect to: the first the host resolves to, if every one is allowed.
    async fn address(&self, url: &Url) -> Result<SocketAddr, String> {
        let host = url.host_str().ok_or("the URL has no host")?;
        let port = url.port_or_known_default().ok_or("the URL has no port")?;
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect();
        if !self.allow_private
            && let Some(a) = addrs.iter().find(|a| is_private(a.ip()))
        {
            return Err(format!(
                "{host} resolves to {}, a private address (set toolsets.http.allow_private to reach it)",
                a.ip()
            ));
        }
        addrs
            .first()
            .copied()
            .ok_or_else(|| format!("{host} has no address"))
    }
}

pub use switchyard_common::net::is_private;

impl Tool for HttpGet {
    fn spec(&self) -> ToolSpec {
        let allow: Vec<&str> = self.allow.iter().map(Url::as_str).collect();
        ToolSpec {
            name: "http_get".into(),
            description: format!("GET a URL under one of: {}", allow.join(", ")),
            parameters: json!({"type": "object", "required": ["url"], "properties": {"url": {"type": "string"}}}),
        }
    }

    fn call<'a>(&'a self, args: &'a Value) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let raw = args
                .get("url")
                .and_then(Value::as_str)
                .ok_or("the argument \"url\" is required")?;
            let mut url = Url::parse(raw).map_err(|e| format!("not a URL: {e}"))?;
            for _ in 0..=MAX_REDIRECTS {
                if !self.allowed(&url) {
                    return Err(format!("{url} is not under an allow-listed prefix"));
                }
                let addr = self.address(&url).await?;
                let host = url.host_str().unwrap_or_default().to_owned();
                // A client pinned to the checked address, following no redirect on its own.
                let client = reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .resolve(&host, addr)
                    .timeout(TIMEOUT)
                    .build()
                    .map_err(|e| e.to_string())?;
                let mut resp = client
                    .get(url.clone())
                    .send()
                    .await
                    .map_err(|e| e.without_url().to_string())?;
                let status = resp.status();
                if status.is_redirection() {
                    let next = resp
                        .headers()
                        .get("location")
                        .and_then(|l| l.to_str().ok())
                        .ok_or_else(|| format!("{status} without a Location"))?;
                    url = url.join(next).map_err(|e| format!("a bad redirect: {e}"))?;
                    continue;
                }
                let mut body = Vec::new();
                while let Some(chunk) = resp
                    .chunk()
                    .await
                    .map_err(|e| e.without_url().to_string())?
                {
                    body.extend_from_slice(&chunk);
                    if body.len() >= MAX_BODY {
                        body.truncate(MAX_BODY);
                        break;
                    }
                }
                let text = String::from_utf8_lossy(&body);
                return if status.is_success() {
                    Ok(text.into_owned())
                } else {
                    Err(format!(
                        "{status}: {}",
                        text.chars().take(500).collect::<String>()
                    ))
                };
            }
            Err(format!("more than {MAX_REDIRECTS} redirects"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_scheme_host_port_and_path() {
        let t = HttpGet::from_config(Some(&json!({"allow": ["https://status.example.com/api/"]})))
            .unwrap();
        let ok = |u: &str| t.allowed(&Url::parse(u).unwrap());
        assert!(ok("https://status.example.com/api/v2/summary.json"));
        assert!(!ok("https://status.example.com/admin"));
        assert!(!ok("http://status.example.com/api/x"));
        assert!(!ok("https://status.example.com.evil.test/api/x"));
        assert!(!ok("https://status.example.com:8443/api/x"));
        assert!(HttpGet::from_config(Some(&json!({"allow": []}))).is_none());
    }

    #[test]
    fn private_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700::1111"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }
}
