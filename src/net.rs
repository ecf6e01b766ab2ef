//! The URLs a request hands us (a model's `base_url`, a rollout's `tool_server_url`)
//! and the HTTP client that calls them. A URL is parsed once, by reqwest's own parser
//! (the `url` crate), so what is checked is what is called, and compared by its parts,
//! never as text: a text prefix test took `http://127.0.0.1:8080@attacker/` for this
//! server and sent it the server's token. The client follows no redirect: a 302 from
//! a "model" would turn its POST into a GET of whatever internal page it names.

use std::time::Duration;

use reqwest::Url;

/// An `http(s)` URL with a host and without credentials, query or fragment (paths
/// are appended to it), or why not, as a 422 message.
pub fn parse_http_url(text: &str) -> Result<Url, &'static str> {
    let url = Url::parse(text).map_err(|_| "Input should be a valid URL")?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("URL scheme should be 'http' or 'https'");
    }
    if url.host().is_none() {
        return Err("URL should have a host");
    }
    if has_credentials(&url) {
        return Err("URL should not contain credentials (user:password@)");
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("URL should not have a query or fragment");
    }
    Ok(url)
}

fn has_credentials(url: &Url) -> bool {
    !url.username().is_empty() || url.password().is_some()
}

/// Whether `url` is `base` or below it: the same scheme, host and port (a default
/// port written out or not), neither with credentials, and a path that is `base`'s
/// or continues it after a `/` (`/environments/env_a` is not below
/// `/environments/env_ab`). Hosts are compared as the parser normalises them
/// (lower case, percent-decoded, IPv4 and IPv6 as addresses); names that differ
/// after that (`localhost.` and `localhost`) differ.
pub fn is_within(url: &Url, base: &Url) -> bool {
    let base_path = base.path().trim_end_matches('/');
    !has_credentials(url)
        && !has_credentials(base)
        && url.scheme() == base.scheme()
        && url.host().is_some()
        && url.host() == base.host()
        && url.port_or_known_default() == base.port_or_known_default()
        && url
            .path()
            .strip_prefix(base_path)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Whether `url` is one of this server's environments (`{own}/environments/…` or
/// `{own}/v1/environments/…`, `own` being the server's base URL): the one place a
/// rollout may send the server's own token.
pub fn is_own_environment(url: &Url, own: &Url) -> bool {
    ["environments", "v1/environments"]
        .iter()
        .any(|path| own.join(path).is_ok_and(|base| is_within(url, &base)))
}

/// The client for models and remote tool servers: a redirect is an answer (the
/// caller reports it), never followed. Like `reqwest::Client::new`, it panics only
/// if the TLS backend cannot start.
pub fn outbound_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("the TLS backend initializes")
}

/// The host a redirect points to (`Location`, resolved against the request's URL),
/// all that is ever shown of it.
pub fn redirect_host(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|location| response.url().join(location).ok())
        .and_then(|url| url.host_str().map(str::to_string))
        .unwrap_or_else(|| "an unknown host".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    fn within(u: &str, base: &str) -> bool {
        is_within(&url(u), &url(base))
    }

    #[test]
    fn credentials_never_match_and_are_refused() {
        let base = "http://127.0.0.1:8080/";
        assert!(!within("http://127.0.0.1:8080@attacker:19999/steal", base));
        assert!(!within("http://user@127.0.0.1:8080/environments/x", base));
        assert!(!within("http://:pw@127.0.0.1:8080/", base));
        assert!(!within(base, "http://user:pw@127.0.0.1:8080/"));
        for text in [
            "http://127.0.0.1:8080@attacker:19999/steal",
            "https://user:pw@example.com/v1",
        ] {
            assert_eq!(
                parse_http_url(text).unwrap_err(),
                "URL should not contain credentials (user:password@)"
            );
        }
    }

    #[test]
    fn scheme_and_host_compare_case_insensitively() {
        assert!(within("HTTP://LocalHost:8080/a", "http://localhost:8080/"));
        assert!(within("http://EXAMPLE.com/a", "http://example.COM/"));
        assert!(!within(
            "https://localhost:8080/a",
            "http://localhost:8080/"
        ));
    }

    #[test]
    fn a_trailing_dot_is_the_same_address_but_not_the_same_name() {
        // An IPv4 address with a trailing dot is that address.
        assert!(within("http://127.0.0.1.:8080/a", "http://127.0.0.1:8080/"));
        // A name with one is another name: never taken for this server.
        assert!(!within(
            "http://localhost.:8080/a",
            "http://localhost:8080/"
        ));
        assert!(!within(
            "http://localhost:8080/a",
            "http://localhost.:8080/"
        ));
    }

    #[test]
    fn ipv6_hosts_compare_as_addresses() {
        assert!(within("http://[::1]:8080/a", "http://[::1]:8080/"));
        assert!(within(
            "http://[0:0:0:0:0:0:0:1]:8080/a",
            "http://[::1]:8080/"
        ));
        assert!(!within("http://[::2]:8080/a", "http://[::1]:8080/"));
        assert!(!within("http://127.0.0.1:8080/a", "http://[::1]:8080/"));
    }

    #[test]
    fn percent_encoding_is_decoded_in_hosts_and_kept_in_paths() {
        assert!(within(
            "http://127.0.0.%31:8080/a",
            "http://127.0.0.1:8080/"
        ));
        assert!(!within("http://attacker%2ecom/", "http://attacker/"));
        let base = "http://h/environments/env_a";
        assert!(!within("http://h/environments/env%5Fa/email", base));
        // `%2e%2e` is `..`: resolved before the comparison, out of the prefix.
        assert!(!within("http://h/environments/env_a/%2e%2e/env_b", base));
        assert!(!within("http://h/environments/env_a/../env_b", base));
    }

    #[test]
    fn default_ports_are_the_same_written_or_not() {
        assert!(within("http://h:80/a", "http://h/"));
        assert!(within("https://h/a", "https://h:443/"));
        assert!(!within("http://h:8080/a", "http://h/"));
        assert!(!within("https://h:80/a", "http://h/"));
    }

    #[test]
    fn a_path_prefix_ends_at_a_segment_boundary() {
        let base = "http://h/environments/env_a";
        assert!(within("http://h/environments/env_a", base));
        assert!(within("http://h/environments/env_a/", base));
        assert!(within("http://h/environments/env_a/email", base));
        assert!(!within("http://h/environments/env_ab", base));
        assert!(!within("http://h/environments/env_ab/email", base));
        assert!(within(
            "http://h/environments/env_ab",
            "http://h/environments/"
        ));
    }

    #[test]
    fn only_this_servers_environments_are_its_own() {
        let own = url("http://127.0.0.1:8080");
        let own_env = |u: &str| is_own_environment(&url(u), &own);
        assert!(own_env("http://127.0.0.1:8080/environments/env_1"));
        assert!(own_env("http://127.0.0.1:8080/v1/environments/env_1"));
        assert!(!own_env("http://127.0.0.1:8080/runs"));
        assert!(!own_env("http://127.0.0.1:8080/environmentsX/env_1"));
        assert!(!own_env(
            "http://127.0.0.1:8080@attacker:19999/environments/e"
        ));
        assert!(!own_env("http://127.0.0.1:8081/environments/env_1"));
        assert!(!own_env("http://127.0.0.1.attacker/environments/env_1"));
    }

    #[test]
    fn only_http_urls_with_a_host_are_accepted() {
        assert!(parse_http_url("http://127.0.0.1:8080/v1").is_ok());
        assert!(parse_http_url("https://api.openai.com/v1").is_ok());
        assert!(parse_http_url("http://[::1]:9/").is_ok());
        for (text, msg) in [
            ("http://", "Input should be a valid URL"),
            ("not a url", "Input should be a valid URL"),
            ("", "Input should be a valid URL"),
            ("ftp://h/", "URL scheme should be 'http' or 'https'"),
            (
                "file:///etc/passwd",
                "URL scheme should be 'http' or 'https'",
            ),
            ("http://h/v1?x=1", "URL should not have a query or fragment"),
            ("http://h/v1#x", "URL should not have a query or fragment"),
        ] {
            assert_eq!(parse_http_url(text).unwrap_err(), msg, "{text}");
        }
    }
}
