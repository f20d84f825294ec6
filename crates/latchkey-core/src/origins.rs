//! Trusted origins (Okta's `/api/v1/trustedOrigins`): the web origins allowed to call the
//! cookie-bearing endpoints cross-origin (scope CORS) and to be redirect targets (scope REDIRECT).
//!
//! An origin is stored normalised (`scheme://host[:port]`, lower-case, default port dropped) so
//! that comparisons against a browser's `Origin` header are exact string matches.

use crate::clock::Timestamp;
use crate::error::{CoreError, FieldError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Cors,
    Redirect,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Cors => "CORS",
            Scope::Redirect => "REDIRECT",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "CORS" => Some(Scope::Cors),
            "REDIRECT" => Some(Scope::Redirect),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedOrigin {
    pub id: String,
    pub name: String,
    pub origin: String,
    pub scopes: Vec<Scope>,
    pub active: bool,
    pub created: Timestamp,
    pub last_updated: Timestamp,
}

impl TrustedOrigin {
    pub fn allows(&self, scope: Scope) -> bool {
        self.active && self.scopes.contains(&scope)
    }
}

/// Normalises an origin (`https://App.Example.com:443` → `https://app.example.com`); `None` when
/// the text is not a bare http(s) origin (no path, query, fragment or credentials).
pub fn normalise(text: &str) -> Option<String> {
    let text = text.trim();
    let (scheme, rest) = text.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => "80",
        "https" => "443",
        _ => return None,
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty()
        || authority.contains(['/', '?', '#', '@', ' ', '\\'])
        || authority.chars().any(|c| c.is_control())
        || authority.len() > 255
    {
        return None;
    }
    let lowered = authority.to_ascii_lowercase();
    // Split a port off the end, minding IPv6 literals like [::1]:8080.
    let (host, port) = match lowered.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') && (host.starts_with('[') == host.ends_with(']')) => {
            if port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) || port.parse::<u16>().is_err() {
                return None;
            }
            (host.to_owned(), Some(port.to_owned()))
        }
        _ => (lowered.clone(), None),
    };
    if host.is_empty()
        || !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
    {
        return None;
    }
    Some(match port {
        Some(port) if port != default_port => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// The origin part of an absolute URL (for checking redirect targets), normalised.
pub fn origin_of_url(url: &str) -> Option<String> {
    let (scheme, rest) = url.trim().split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    normalise(&format!("{scheme}://{}", &rest[..end]))
}

/// Validates the fields of a trusted origin create/replace request.
pub fn validate(name: &str, origin: &str, scopes: &[String]) -> Result<(String, Vec<Scope>), CoreError> {
    let mut causes = Vec::new();
    if name.trim().is_empty() || name.chars().count() > 255 {
        causes.push(FieldError::new(
            "name",
            "The field cannot be left blank and must be at most 255 characters",
        ));
    }
    let normalised = normalise(origin);
    if normalised.is_none() {
        causes.push(FieldError::new("origin", "The origin must be an http or https origin without a path"));
    }
    let mut parsed = Vec::new();
    for scope in scopes {
        match Scope::parse(scope) {
            Some(s) if !parsed.contains(&s) => parsed.push(s),
            Some(_) => {}
            None => causes.push(FieldError::new("scopes", format!("'{scope}' is not CORS or REDIRECT"))),
        }
    }
    if scopes.is_empty() {
        causes.push(FieldError::new("scopes", "At least one scope is required"));
    }
    CoreError::from_causes(causes)?;
    Ok((normalised.unwrap_or_default(), parsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_normalise() {
        assert_eq!(normalise("https://App.Example.com:443").as_deref(), Some("https://app.example.com"));
        assert_eq!(normalise("http://127.0.0.1:8080/").as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(normalise("http://[::1]:3000").as_deref(), Some("http://[::1]:3000"));
        for bad in [
            "ftp://x",
            "https://x/path",
            "https://u@x",
            "https://",
            "x.com",
            "https://x:99999",
            "https://x?q",
        ] {
            assert_eq!(normalise(bad), None, "{bad}");
        }
    }

    #[test]
    fn urls_reduce_to_their_origin() {
        assert_eq!(
            origin_of_url("https://app.example.com/landing?x=1").as_deref(),
            Some("https://app.example.com")
        );
        assert_eq!(origin_of_url("https://evil.com\\@app.example.com/"), None);
        assert_eq!(origin_of_url("//app.example.com/"), None);
        assert_eq!(origin_of_url("javascript:alert(1)"), None);
    }
}
