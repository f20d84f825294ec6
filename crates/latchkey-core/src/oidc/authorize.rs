//! The checks of an authorization request (RFC 6749 §4.1.1, §4.2.1; OpenID Connect Core §3.1.2.1),
//! before anything is sent anywhere.
//!
//! Until the client's redirect URI is known to be registered, every error is a page for the user
//! (RFC 6749 §4.1.2.1: never redirect to an unchecked URI). After that, errors go back to the
//! client at that URI, in the response mode it asked for, with its `state`.

use super::{ErrorCode, OAuthError, Server};
use crate::apps::OidcSignOn;

/// How the answer is carried back to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMode {
    /// In the redirect URI's query (the code flow's default).
    Query,
    /// In the redirect URI's fragment (the implicit flow's default).
    Fragment,
    /// An auto-submitted form posted to the redirect URI (OAuth 2.0 Form Post Response Mode).
    FormPost,
    /// Okta's mode for okta-auth-js's hidden iframe and popup: a page that posts a message to the
    /// window that opened it, addressed to the redirect URI's origin only.
    OktaPostMessage,
}

impl ResponseMode {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "query" => Some(ResponseMode::Query),
            "fragment" => Some(ResponseMode::Fragment),
            "form_post" => Some(ResponseMode::FormPost),
            "okta_post_message" => Some(ResponseMode::OktaPostMessage),
            _ => None,
        }
    }
}

/// OpenID Connect Core §3.1.2.1 `prompt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    /// Sign in only if there is no session.
    Default,
    /// Never show a page: without a usable session, `login_required`.
    None,
    /// Authenticate again, whatever session there is.
    Login,
}

/// A checked authorization request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizeRequest {
    pub server: Server,
    pub client_id: String,
    pub redirect_uri: String,
    /// `code`, or the implicit flow's `id_token` and/or `token`.
    pub response_types: Vec<String>,
    pub response_mode: ResponseMode,
    pub scopes: Vec<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub prompt: Prompt,
    /// Seconds since the user's last authentication beyond which they must authenticate again.
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    pub session_token: Option<String>,
}

impl AuthorizeRequest {
    pub fn wants_code(&self) -> bool {
        self.response_types.iter().any(|t| t == "code")
    }
}

/// Why an authorization request was refused, and where the user hears of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The client or its redirect URI is not known: a page, never a redirect.
    Page(String),
    /// Back to the client.
    Redirect { redirect_uri: String, mode: ResponseMode, state: Option<String>, error: OAuthError },
}

const MAX_PARAM_LEN: usize = 2048;
/// Parameters that may appear at most once (RFC 6749 §3.1).
const SINGLE: [&str; 13] = [
    "client_id",
    "redirect_uri",
    "response_type",
    "response_mode",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "max_age",
    "login_hint",
    "sessionToken",
];

/// Checks `params` (the query or the posted form) for `app`, which the caller found by
/// `client_id`.
pub fn check(
    server: Server,
    client_id: &str,
    app: &OidcSignOn,
    custom_scopes: &[String],
    params: &[(String, String)],
) -> Result<AuthorizeRequest, Refused> {
    let count = |name: &str| params.iter().filter(|(k, _)| k == name).count();
    let param = |name: &str| {
        params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    };
    if count("redirect_uri") > 1 || count("client_id") > 1 {
        return Err(Refused::Page("the request repeats its client_id or redirect_uri".to_owned()));
    }
    let Some(asked) = param("redirect_uri") else {
        return Err(Refused::Page("the request has no redirect_uri".to_owned()));
    };
    let Some(redirect_uri) = app.redirect_uri(asked) else {
        return Err(Refused::Page(
            "the redirect_uri is not one of this app's sign-in redirect URIs".to_owned(),
        ));
    };
    // Answers go to the URI the client asked for (a native app's loopback port included).
    let redirect_uri = if redirect_uri == asked { redirect_uri.to_owned() } else { asked.to_owned() };
    // A state too long to be the client's (refused below) is not echoed back.
    let state = param("state").filter(|s| s.len() <= MAX_PARAM_LEN).map(str::to_owned);
    let response_types: Vec<String> = {
        let mut types: Vec<String> = param("response_type")
            .unwrap_or_default()
            .split(' ')
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        types.sort();
        types.dedup();
        types
    };
    let implicit =
        !response_types.is_empty() && response_types.iter().all(|t| t == "id_token" || t == "token");
    let default_mode = if implicit { ResponseMode::Fragment } else { ResponseMode::Query };
    let mode = match param("response_mode") {
        None => default_mode,
        Some(text) => match ResponseMode::parse(text) {
            Some(ResponseMode::Query) if implicit => default_mode,
            Some(mode) => mode,
            None => default_mode,
        },
    };
    let refuse = |code: ErrorCode, description: &str| Refused::Redirect {
        redirect_uri: redirect_uri.clone(),
        mode,
        state: state.clone(),
        error: OAuthError::new(code, description),
    };
    if let Some(text) = param("response_mode")
        && (ResponseMode::parse(text).is_none() || (implicit && text == "query"))
    {
        return Err(refuse(
            ErrorCode::InvalidRequest,
            "The response_mode is not supported for this response_type.",
        ));
    }
    if let Some(name) = SINGLE.iter().find(|name| count(name) > 1) {
        return Err(refuse(ErrorCode::InvalidRequest, &format!("The '{name}' parameter is repeated.")));
    }
    if let Some((name, _)) = params.iter().find(|(_, v)| v.len() > MAX_PARAM_LEN) {
        let name: String = name.chars().take(40).collect();
        return Err(refuse(ErrorCode::InvalidRequest, &format!("The '{name}' parameter is too long.")));
    }
    if response_types.is_empty() {
        return Err(refuse(ErrorCode::InvalidRequest, "The 'response_type' parameter is missing."));
    }
    let code_flow = response_types == ["code"];
    if !code_flow && !implicit {
        return Err(refuse(ErrorCode::UnsupportedResponseType, "The response type is not supported."));
    }
    let allowed = if code_flow {
        app.allows_grant("authorization_code") && app.allows_response_type("code")
    } else {
        app.allows_grant("implicit") && response_types.iter().all(|t| app.allows_response_type(t))
    };
    if !allowed {
        return Err(refuse(
            ErrorCode::UnauthorizedClient,
            "The client is not authorized to use the provided response type.",
        ));
    }
    let scopes: Vec<String> = {
        let mut scopes: Vec<String> = Vec::new();
        for scope in param("scope").unwrap_or_default().split(' ').filter(|s| !s.is_empty()) {
            if !scopes.iter().any(|s| s == scope) {
                scopes.push(scope.to_owned());
            }
        }
        scopes
    };
    if scopes.is_empty() {
        return Err(refuse(
            ErrorCode::InvalidScope,
            "The authorization request must request at least one scope.",
        ));
    }
    let known = |scope: &str| {
        server.scopes().contains(&scope)
            || (server == Server::Default && custom_scopes.iter().any(|c| c == scope))
    };
    if let Some(unknown) = scopes.iter().find(|s| !known(s)) {
        let unknown: String = unknown.chars().take(60).collect();
        return Err(refuse(
            ErrorCode::InvalidScope,
            &format!(
                "One or more scopes are not configured for the authorization server resource: '{unknown}'."
            ),
        ));
    }
    let openid = scopes.iter().any(|s| s == "openid");
    if response_types.iter().any(|t| t == "id_token") && !openid {
        return Err(refuse(ErrorCode::InvalidScope, "The 'openid' scope is required for an id_token."));
    }
    if server == Server::Org && !openid {
        return Err(refuse(
            ErrorCode::InvalidScope,
            "The org authorization server requires the 'openid' scope.",
        ));
    }
    let nonce = param("nonce").map(str::to_owned);
    if implicit && response_types.iter().any(|t| t == "id_token") && nonce.is_none() {
        return Err(refuse(
            ErrorCode::InvalidRequest,
            "The 'nonce' parameter is required for an implicit id_token.",
        ));
    }
    let code_challenge = match (param("code_challenge"), param("code_challenge_method")) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err(refuse(
                ErrorCode::InvalidRequest,
                "The 'code_challenge_method' needs a 'code_challenge'.",
            ));
        }
        (Some(challenge), method) => {
            if method != Some("S256") {
                return Err(refuse(ErrorCode::InvalidRequest, "PKCE code_challenge_method must be S256."));
            }
            let valid = challenge.len() == 43
                && challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid {
                return Err(refuse(
                    ErrorCode::InvalidRequest,
                    "The PKCE code_challenge is not a base64url SHA-256 digest.",
                ));
            }
            Some(challenge.to_owned())
        }
    };
    if code_flow && code_challenge.is_none() && app.requires_pkce() {
        return Err(refuse(ErrorCode::InvalidRequest, "PKCE code challenge is required by the client."));
    }
    if !code_flow && code_challenge.is_some() {
        return Err(refuse(ErrorCode::InvalidRequest, "PKCE applies to the authorization code flow only."));
    }
    let prompt = match param("prompt") {
        None => Prompt::Default,
        Some(text) => {
            let values: Vec<&str> = text.split(' ').filter(|v| !v.is_empty()).collect();
            if values.iter().any(|v| !["none", "login", "consent", "select_account"].contains(v)) {
                return Err(refuse(ErrorCode::InvalidRequest, "The 'prompt' parameter is not supported."));
            }
            match (values.contains(&"none"), values.contains(&"login")) {
                (true, _) if values.len() > 1 => {
                    return Err(refuse(
                        ErrorCode::InvalidRequest,
                        "prompt=none cannot be combined with other values.",
                    ));
                }
                (true, _) => Prompt::None,
                (false, true) => Prompt::Login,
                (false, false) => Prompt::Default,
            }
        }
    };
    let max_age = match param("max_age") {
        None => None,
        Some(text) => match text.parse::<i64>() {
            Ok(seconds) if seconds >= 0 => Some(seconds),
            _ => {
                return Err(refuse(
                    ErrorCode::InvalidRequest,
                    "The 'max_age' parameter must be a non-negative integer.",
                ));
            }
        },
    };
    Ok(AuthorizeRequest {
        server,
        client_id: client_id.to_owned(),
        redirect_uri,
        response_types,
        response_mode: mode,
        scopes,
        state,
        nonce,
        code_challenge,
        prompt,
        max_age,
        login_hint: param("login_hint").map(str::to_owned),
        session_token: param("sessionToken").map(str::to_owned),
    })
}

/// Whether `verifier` answers the S256 `challenge` (RFC 7636 §4.6), in constant time.
pub fn pkce_matches(challenge: &str, verifier: &str) -> bool {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    let valid = (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if !valid {
        return false;
    }
    let computed =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    computed.as_bytes().ct_eq(challenge.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn app(extra: serde_json::Value) -> OidcSignOn {
        let mut settings = json!({
            "redirect_uris": ["https://rp.example.com/cb"],
            "response_types": ["code"],
            "grant_types": ["authorization_code"],
            "application_type": "web",
        });
        if let (Some(s), Some(e)) = (settings.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        OidcSignOn::from_api(&settings, None, Vec::new()).unwrap()
    }

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn a_code_request_is_checked_and_kept() {
        let request = check(
            Server::Org,
            "0oa1",
            &app(json!({})),
            &[],
            &params(&[
                ("redirect_uri", "https://rp.example.com/cb"),
                ("response_type", "code"),
                ("scope", "openid email openid"),
                ("state", "s1"),
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "S256"),
            ]),
        )
        .unwrap();
        assert_eq!(request.scopes, ["openid", "email"]);
        assert_eq!(request.response_mode, ResponseMode::Query);
        assert_eq!(request.code_challenge.as_deref(), Some(CHALLENGE));
    }

    #[test]
    fn an_unregistered_redirect_uri_is_a_page_and_later_errors_go_back() {
        let refused = check(
            Server::Org,
            "0oa1",
            &app(json!({})),
            &[],
            &params(&[("redirect_uri", "https://evil.example/cb"), ("response_type", "code")]),
        );
        assert!(matches!(refused, Err(Refused::Page(_))));
        let refused = check(
            Server::Org,
            "0oa1",
            &app(json!({})),
            &[],
            &params(&[
                ("redirect_uri", "https://rp.example.com/cb"),
                ("response_type", "token"),
                ("scope", "openid"),
                ("state", "x"),
            ]),
        );
        let Err(Refused::Redirect { error, state, .. }) = refused else { panic!("{refused:?}") };
        assert_eq!(error.code, ErrorCode::UnauthorizedClient);
        assert_eq!(state.as_deref(), Some("x"));
    }

    #[test]
    fn plain_pkce_and_missing_pkce_for_public_clients_are_refused() {
        let base =
            [("redirect_uri", "https://rp.example.com/cb"), ("response_type", "code"), ("scope", "openid")];
        let mut plain = params(&base);
        plain.extend(params(&[("code_challenge", CHALLENGE), ("code_challenge_method", "plain")]));
        assert!(matches!(
            check(Server::Org, "c", &app(json!({})), &[], &plain),
            Err(Refused::Redirect { .. })
        ));
        let spa = app(json!({"application_type": "browser"}));
        let Err(Refused::Redirect { error, .. }) = check(Server::Org, "c", &spa, &[], &params(&base)) else {
            panic!()
        };
        assert_eq!(error.code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn the_rfc_7636_example_verifier_matches_its_challenge() {
        assert!(pkce_matches(CHALLENGE, "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"));
        assert!(!pkce_matches(CHALLENGE, "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj"));
        assert!(!pkce_matches(CHALLENGE, "short"));
    }
}
