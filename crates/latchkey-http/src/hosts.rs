//! Custom domains: the organisation answers on its public URL and on any configured custom
//! domain, and refuses every other `Host`. Links and cookies follow the host the browser used
//! (each host has its own cookies, so its own sessions, as in Okta); links are never built from an
//! unchecked `Host` header. The check itself is the `route_host` middleware.

tokio::task_local! {
    /// The public base URL (scheme, host, port) of the request being handled.
    static REQUEST_BASE: String;
}

/// The base URL of the current request, or `default` outside a request (start-up, tests in-process
/// without a `Host`).
pub(crate) fn current_base(default: &str) -> String {
    REQUEST_BASE.try_with(Clone::clone).unwrap_or_else(|_| default.to_owned())
}

/// Matches `Host` against the configured bases (public URL first, then custom domains).
pub(crate) fn base_for_host<'a>(bases: impl IntoIterator<Item = &'a String>, host: &str) -> Option<&'a str> {
    bases.into_iter().map(String::as_str).find(|base| {
        let scheme = base.split("://").next().unwrap_or("http");
        latchkey_core::origins::normalise(&format!("{scheme}://{host}")).as_deref()
            == latchkey_core::origins::normalise(base).as_deref()
    })
}

/// Runs `handling` with `base` as the request's public base URL.
pub(crate) async fn under_base<F: Future>(base: String, handling: F) -> F::Output {
    REQUEST_BASE.scope(base, handling).await
}

#[cfg(test)]
mod tests {
    use super::base_for_host;

    #[test]
    fn hosts_match_configured_bases_only() {
        let bases = vec!["http://127.0.0.1:8080".to_owned(), "https://login.example.com".to_owned()];
        assert_eq!(base_for_host(&bases, "127.0.0.1:8080"), Some("http://127.0.0.1:8080"));
        assert_eq!(base_for_host(&bases, "LOGIN.example.com"), Some("https://login.example.com"));
        assert_eq!(base_for_host(&bases, "login.example.com:443"), Some("https://login.example.com"));
        assert_eq!(base_for_host(&bases, "localhost:8080"), None);
        assert_eq!(base_for_host(&bases, "evil.example.com"), None);
        assert_eq!(base_for_host(&bases, "login.example.com/../x"), None);
    }
}
