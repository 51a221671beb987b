//! Where deliveries may go. A subscription's URL is checked when it is written ([`check_url`]),
//! and again at every delivery: an IP literal by [`check_url`], a name by [`PublicOnly`], the
//! delivery client's resolver, which drops private addresses, so the connection goes to an
//! address that was checked (a name that resolved to a public address yesterday and to
//! `169.254.169.254` today gets nothing).

use std::net::{IpAddr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use switchyard_common::net::is_private;

/// `https` to a public host; with private targets allowed, `http` and any host too.
pub fn check_url(url: &str, allow_private: bool) -> Result<reqwest::Url, String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    match u.scheme() {
        "https" => {}
        "http" if allow_private => {}
        other => return Err(format!("must be https (not {other})")),
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("must not carry credentials; deliveries are signed instead".into());
    }
    let host = u.host_str().ok_or("must name a host")?;
    if allow_private {
        return Ok(u);
    }
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let private = match literal.parse::<IpAddr>() {
        Ok(ip) => is_private(ip),
        Err(_) => host.eq_ignore_ascii_case("localhost") || host.ends_with(".localhost"),
    };
    if private {
        return Err("must be a public address (private, loopback and link-local targets are off on this platform)".into());
    }
    Ok(u)
}

/// A resolver that answers only public addresses; a name with none fails the delivery.
#[derive(Debug, Default)]
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = all.into_iter().filter(|a| !is_private(a.ip())).collect();
            if public.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_public_https_unless_the_platform_allows_private_ones() {
        assert!(check_url("https://hooks.example.com/switchyard", false).is_ok());
        for bad in [
            "http://hooks.example.com/",
            "https://10.1.2.3/",
            "https://127.0.0.1:8443/",
            "https://[::1]/",
            "https://[fe80::1]/",
            "https://169.254.169.254/latest/meta-data",
            "https://localhost/",
            "https://api.localhost/",
            "https://u:p@hooks.example.com/",
            "not a url",
        ] {
            assert!(check_url(bad, false).is_err(), "{bad}");
        }
        assert!(check_url("http://127.0.0.1:9000/", true).is_ok());
        assert!(check_url("ftp://127.0.0.1/", true).is_err());
    }

    #[tokio::test]
    async fn names_resolving_only_to_private_addresses_get_nothing() {
        let err = PublicOnly
            .resolve("localhost".parse().unwrap())
            .await
            .err()
            .expect("localhost is loopback");
        assert!(err.to_string().contains("no public address"), "{err}");
    }
}
