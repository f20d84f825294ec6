//! Where a browser may be sent: this IdP's own paths, and absolute URLs on this IdP or on a trusted
//! origin with scope REDIRECT. Every redirect built from a request's parameters goes through here,
//! so none of them is an open redirect.

use latchkey_core::CoreError;
use latchkey_core::origins::{self, Scope};
use latchkey_core::store::TrustedOriginStore;

use crate::state::AppState;

/// The sign-in page, returning to `from` afterwards.
pub(crate) fn sign_in_url(state: &AppState, from: Option<&str>) -> String {
    match from {
        Some(from) => {
            let encoded: String = url::form_urlencoded::byte_serialize(from.as_bytes()).collect();
            state.link(&format!("/login/login.htm?fromURI={encoded}"))
        }
        None => state.link("/login/login.htm"),
    }
}

/// Is `origin` (as sent by a browser) allowed for `scope`? The IdP's own origin always is.
pub(crate) async fn is_trusted(state: &AppState, origin: &str, scope: Scope) -> Result<bool, CoreError> {
    let Some(normalised) = origins::normalise(origin) else { return Ok(false) };
    if origins::normalise(&state.base()).as_deref() == Some(normalised.as_str()) {
        return Ok(true);
    }
    Ok(state.store.find_trusted_origin(&normalised).await?.is_some_and(|t| t.allows(scope)))
}

/// Is `url` an absolute URL on the IdP itself or on a trusted REDIRECT origin?
pub(crate) async fn is_allowed_redirect(state: &AppState, url: &str) -> Result<bool, CoreError> {
    if url.len() > 4096 || url.chars().any(|c| c.is_control() || c == '\\') {
        return Ok(false);
    }
    let Some(origin) = origins::origin_of_url(url) else { return Ok(false) };
    is_trusted(state, &origin, Scope::Redirect).await
}

/// A path on this IdP: one leading `/` (not `//` or `/\`, which browsers read as another host),
/// no scheme, no control characters or backslashes.
pub(crate) fn is_local_path(uri: &str) -> bool {
    uri.starts_with('/')
        && !uri.starts_with("//")
        && uri.len() <= 4096
        && !uri.chars().any(|c| c.is_control() || c == '\\')
}

/// `fromURI` if the browser may be sent there after sign-in: a local path, or an absolute URL on
/// this IdP or a trusted origin with scope REDIRECT. Anything else is dropped (never followed).
pub(crate) async fn checked_from_uri(
    state: &AppState,
    from: Option<&str>,
) -> Result<Option<String>, CoreError> {
    let Some(from) = from.map(str::trim).filter(|f| !f.is_empty()) else { return Ok(None) };
    if is_local_path(from) {
        return Ok(Some(from.to_owned()));
    }
    Ok(is_allowed_redirect(state, from).await?.then(|| from.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::is_local_path;

    #[test]
    fn local_paths_are_single_slash_paths_only() {
        assert!(is_local_path("/app/UserHome"));
        assert!(is_local_path("/app/x/exk1/sso/saml?resume=abc"));
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example/",
            "javascript:alert(1)",
            "/a\nb",
            "/a\\b",
            "",
        ] {
            assert!(!is_local_path(bad), "{bad:?}");
        }
    }
}
