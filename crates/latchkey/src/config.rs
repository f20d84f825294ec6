//! Configuration: defaults, then a TOML file, then `LATCHKEY_*` environment variables, then flags
//! (docs/architecture.md, "Command line and configuration"), parsed into [`RawConfig`] and validated into the
//! [`Settings`] the program uses.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use latchkey_core::sessions::TokenPrecedence;
use serde::{Deserialize, Serialize};
use url::Url;

/// Keys accepted from files and `LATCHKEY_<KEY>` variables.
const KEYS: &[&str] = &[
    "listen",
    "public_url",
    "database_url",
    "session_token_precedence",
    "log_format",
    "body_limit_bytes",
    "master_key",
    "master_key_file",
    "authn_rate_limit_per_username",
    "authn_rate_limit_per_ip",
    "custom_domains",
    "pages_dir",
    "test_sp",
    "hsts_max_age_secs",
    "metrics_token",
    "signout_requires_same_site",
];

/// The configuration as written, before validation. Every field is optional so layers compose.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_token_precedence: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_limit_bytes: Option<usize>,
    /// Base64 of 32 bytes; encrypts stored secrets. Every node of an organisation needs the same.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_key_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authn_rate_limit_per_username: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authn_rate_limit_per_ip: Option<u32>,
    /// More public base URLs the organisation answers on (e.g. `["https://login.example.com"]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_domains: Option<Vec<String>>,
    /// A directory replacing parts of the hosted pages (`templates/*.html`, `static/latchkey.css`,
    /// `messages/<lang>.txt`), for branding and languages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pages_dir: Option<String>,
    /// Mount the kiosk portal and the built-in test SP outside demo mode (`serve --demo` always does).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_sp: Option<bool>,
    /// `Strict-Transport-Security` max-age on answers under an `https` public URL; 0 turns it off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hsts_max_age_secs: Option<u64>,
    /// The bearer token `/metrics` asks of scrapers; without one only loopback peers may read it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_token: Option<String>,
    /// `GET /login/signout` ends the session only for a same-site request or the sign-out form.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signout_requires_same_site: Option<bool>,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://latchkey-data/latchkey.db";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub public_url: Url,
    pub database_url: String,
    pub session_token_precedence: TokenPrecedence,
    pub log_format: LogFormat,
    pub body_limit_bytes: usize,
    pub master_key: MasterKeySource,
    pub authn_limits: latchkey_core::authn::machine::AuthnLimits,
    pub custom_domains: Vec<Url>,
    pub pages_dir: Option<std::path::PathBuf>,
    pub test_sp: bool,
    pub hsts_max_age_secs: u64,
    pub metrics_token: Option<String>,
    pub signout_requires_same_site: bool,
}

/// Where the master key comes from.
#[derive(Clone)]
pub enum MasterKeySource {
    /// Given directly (`master_key` / `LATCHKEY_MASTER_KEY`), already validated.
    Inline(String),
    /// A key file; `create` when it may be made on first start (single-node SQLite default).
    File { path: std::path::PathBuf, create: bool },
}

impl std::fmt::Debug for MasterKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MasterKeySource::Inline(_) => f.write_str("Inline(***)"),
            MasterKeySource::File { path, create } => write!(f, "File({}, create: {create})", path.display()),
        }
    }
}

/// Loads the layers. `file` is the `--config` path; `flags` holds command-line overrides.
pub fn load(file: Option<&std::path::Path>, flags: RawConfig) -> Result<RawConfig, String> {
    let mut figment = Figment::new();
    if let Some(path) = file {
        if !path.is_file() {
            return Err(format!("config file {} does not exist", path.display()));
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    figment = figment.merge(Env::prefixed("LATCHKEY_").only(KEYS)).merge(Serialized::defaults(flags));
    figment.extract::<RawConfig>().map_err(|e| e.to_string())
}

impl RawConfig {
    /// Checks every value and fills defaults; the error lists every problem found.
    pub fn validate(&self) -> Result<Settings, Vec<String>> {
        let mut problems = Vec::new();
        let listen_text = self.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = listen_text
            .parse::<SocketAddr>()
            .map_err(|_| {
                problems.push(format!("listen: '{listen_text}' is not an address like 127.0.0.1:8080"))
            })
            .ok();
        let public_url = match (&self.public_url, listen) {
            (Some(text), _) => parse_public_url(text).map_err(|p| problems.push(p)).ok(),
            (None, Some(addr)) => derived_public_url(addr),
            (None, None) => None,
        };
        let database_url = self.database_url.clone().unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        if latchkey_store::Backend::of_url(&database_url).is_none() {
            problems.push("database_url: must start with sqlite:// or postgres://".to_owned());
        }
        let precedence = match self.session_token_precedence.as_deref().unwrap_or("token") {
            "token" => Some(TokenPrecedence::Token),
            "cookie" => Some(TokenPrecedence::Cookie),
            other => {
                problems.push(format!("session_token_precedence: '{other}' is not 'token' or 'cookie'"));
                None
            }
        };
        let log_format = match self.log_format.as_deref().unwrap_or("text") {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            other => {
                problems.push(format!("log_format: '{other}' is not 'text' or 'json'"));
                None
            }
        };
        let body_limit_bytes = self.body_limit_bytes.unwrap_or(latchkey_http::DEFAULT_BODY_LIMIT);
        if !(1024..=16 * 1024 * 1024).contains(&body_limit_bytes) {
            problems.push("body_limit_bytes: must be between 1024 and 16777216".to_owned());
        }
        let master_key = match (&self.master_key, &self.master_key_file) {
            (Some(key), _) => match latchkey_core::crypto::MasterKey::from_base64(key) {
                Ok(_) => Some(MasterKeySource::Inline(key.trim().to_owned())),
                Err(e) => {
                    problems.push(format!("master_key: {e}"));
                    None
                }
            },
            (None, Some(file)) => Some(MasterKeySource::File { path: file.into(), create: false }),
            (None, None) => match sqlite_data_dir(&database_url) {
                Some(dir) => Some(MasterKeySource::File { path: dir.join("master.key"), create: true }),
                None => {
                    problems.push(
                        "master_key: a PostgreSQL deployment needs master_key (LATCHKEY_MASTER_KEY) or \
                         master_key_file, the same on every node"
                            .to_owned(),
                    );
                    None
                }
            },
        };
        let mut custom_domains = Vec::new();
        for domain in self.custom_domains.iter().flatten() {
            match parse_public_url(domain) {
                Ok(url) => custom_domains.push(url),
                Err(problem) => problems.push(problem.replacen("public_url", "custom_domains", 1)),
            }
        }
        // Loaded now, so a template that does not compile stops `config check` and start-up.
        let pages_dir = self.pages_dir.as_deref().filter(|d| !d.is_empty()).map(std::path::PathBuf::from);
        if let Some(dir) = &pages_dir {
            if !dir.is_dir() {
                problems.push(format!("pages_dir: {} is not a directory", dir.display()));
            } else if let Err(problem) = latchkey_http::Pages::load(Some(dir)) {
                problems.push(format!("pages_dir: {problem}"));
            }
        }
        let hsts_max_age_secs = self.hsts_max_age_secs.unwrap_or(latchkey_http::DEFAULT_HSTS_MAX_AGE_SECS);
        if hsts_max_age_secs > 2 * latchkey_http::DEFAULT_HSTS_MAX_AGE_SECS {
            problems.push("hsts_max_age_secs: must be at most 63072000 (two years)".to_owned());
        }
        let metrics_token = self.metrics_token.clone().filter(|t| !t.is_empty());
        if metrics_token.as_ref().is_some_and(|t| t.len() < 16 || t.chars().any(|c| !c.is_ascii_graphic())) {
            problems.push("metrics_token: must be at least 16 visible ASCII characters".to_owned());
        }
        let defaults = latchkey_core::authn::machine::AuthnLimits::default();
        let authn_limits = latchkey_core::authn::machine::AuthnLimits {
            per_username: self.authn_rate_limit_per_username.unwrap_or(defaults.per_username),
            per_ip: self.authn_rate_limit_per_ip.unwrap_or(defaults.per_ip),
        };
        match (listen, public_url, precedence, log_format, master_key) {
            (
                Some(listen),
                Some(public_url),
                Some(session_token_precedence),
                Some(log_format),
                Some(master_key),
            ) if problems.is_empty() => Ok(Settings {
                listen,
                public_url,
                database_url,
                session_token_precedence,
                log_format,
                body_limit_bytes,
                master_key,
                authn_limits,
                custom_domains,
                pages_dir,
                test_sp: self.test_sp.unwrap_or(false),
                hsts_max_age_secs,
                metrics_token,
                signout_requires_same_site: self.signout_requires_same_site.unwrap_or(false),
            }),
            _ => Err(problems),
        }
    }
}

/// The directory holding a SQLite database file (`None` for PostgreSQL or in-memory SQLite).
pub fn sqlite_data_dir(database_url: &str) -> Option<std::path::PathBuf> {
    let rest = database_url.strip_prefix("sqlite://").or_else(|| database_url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path.starts_with(':') {
        return None;
    }
    let parent = std::path::Path::new(path).parent()?.to_path_buf();
    Some(if parent.as_os_str().is_empty() { std::path::PathBuf::from(".") } else { parent })
}

fn parse_public_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("public_url: '{text}' is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!("public_url: '{text}' must be an http(s) URL with a host"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(format!("public_url: '{text}' must be only scheme, host and port"));
    }
    Ok(url)
}

/// Without a configured public URL, links point at the listening address (loopback when it listens
/// on every interface).
fn derived_public_url(addr: SocketAddr) -> Option<Url> {
    let ip = match addr.ip() {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    Url::parse(&format!("http://{}", SocketAddr::new(ip, addr.port()))).ok()
}

impl Settings {
    /// `public_url` without the trailing slash, as links are built from it.
    pub fn public_base(&self) -> String {
        self.public_url.as_str().trim_end_matches('/').to_owned()
    }

    /// Human-readable effective settings with secrets masked (`latchkey config check`).
    pub fn describe(&self) -> String {
        format!(
            "listen = \"{}\"\npublic_url = \"{}\"\ncustom_domains = {:?}\ndatabase_url = \"{}\"\nsession_token_precedence = \"{}\"\nlog_format = \"{}\"\nbody_limit_bytes = {}\n{}\nauthn_rate_limit_per_username = {}\nauthn_rate_limit_per_ip = {}\npages_dir = {:?}\ntest_sp = {}\nhsts_max_age_secs = {}\nmetrics_token = {}\nsignout_requires_same_site = {}\n",
            self.listen,
            self.public_base(),
            self.custom_domains.iter().map(|u| u.as_str().trim_end_matches('/')).collect::<Vec<_>>(),
            mask_password(&self.database_url),
            match self.session_token_precedence {
                TokenPrecedence::Token => "token",
                TokenPrecedence::Cookie => "cookie",
            },
            match self.log_format {
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            },
            self.body_limit_bytes,
            match &self.master_key {
                MasterKeySource::Inline(_) => "master_key = \"***\"".to_owned(),
                MasterKeySource::File { path, .. } => format!("master_key_file = \"{}\"", path.display()),
            },
            self.authn_limits.per_username,
            self.authn_limits.per_ip,
            self.pages_dir.as_ref().map(|d| d.display().to_string()).unwrap_or_default(),
            self.test_sp,
            self.hsts_max_age_secs,
            if self.metrics_token.is_some() { "\"***\"" } else { "(none: loopback scrapers only)" },
            self.signout_requires_same_site,
        )
    }
}

/// Replaces the password in a database URL (user-info or a `password=` parameter) with `***`.
pub fn mask_password(url: &str) -> String {
    let Ok(mut parsed) = Url::parse(url) else { return url.to_owned() };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query_pairs().any(|(k, _)| k.eq_ignore_ascii_case("password")) {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if k.eq_ignore_ascii_case("password") { "***".to_owned() } else { v.into_owned() };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = RawConfig::default().validate().unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.public_base(), "http://127.0.0.1:8080");
        assert_eq!(s.database_url, "sqlite://latchkey-data/latchkey.db");
        assert_eq!(s.session_token_precedence, TokenPrecedence::Token);
    }

    #[test]
    fn public_url_follows_listen_unless_set() {
        let raw = RawConfig { listen: Some("0.0.0.0:9000".into()), ..Default::default() };
        assert_eq!(raw.validate().unwrap().public_base(), "http://127.0.0.1:9000");
        let raw = RawConfig { public_url: Some("https://id.example.com/".into()), ..Default::default() };
        assert_eq!(raw.validate().unwrap().public_base(), "https://id.example.com");
    }

    #[test]
    fn every_problem_is_reported() {
        let raw = RawConfig {
            listen: Some("nowhere".into()),
            public_url: Some("ftp://x/path".into()),
            database_url: Some("mysql://db".into()),
            session_token_precedence: Some("both".into()),
            log_format: Some("xml".into()),
            body_limit_bytes: Some(1),
            master_key: Some("too-short".into()),
            ..Default::default()
        };
        let problems = raw.validate().unwrap_err();
        assert_eq!(problems.len(), 7, "{problems:?}");
    }

    #[test]
    fn postgres_needs_a_shared_master_key_and_sqlite_gets_a_file() {
        let pg = RawConfig { database_url: Some("postgres://db/x".into()), ..Default::default() };
        assert!(pg.validate().unwrap_err()[0].starts_with("master_key:"));
        let sqlite = RawConfig::default().validate().unwrap();
        assert!(matches!(sqlite.master_key, MasterKeySource::File { create: true, .. }));
        assert_eq!(sqlite_data_dir("sqlite://latchkey-data/latchkey.db"), Some("latchkey-data".into()));
        assert_eq!(sqlite_data_dir("sqlite:x.db?mode=rwc"), Some(".".into()));
        assert_eq!(sqlite_data_dir("sqlite::memory:"), None);
    }

    #[test]
    fn pages_dir_must_be_a_directory_of_valid_templates() {
        let missing = RawConfig { pages_dir: Some("/nonexistent/pages".into()), ..Default::default() };
        assert!(missing.validate().unwrap_err()[0].starts_with("pages_dir:"));
        let dir = tempfile::tempdir().unwrap();
        let ok = RawConfig { pages_dir: Some(dir.path().display().to_string()), ..Default::default() };
        assert_eq!(ok.validate().unwrap().pages_dir.as_deref(), Some(dir.path()));
        std::fs::create_dir(dir.path().join("templates")).unwrap();
        std::fs::write(dir.path().join("templates/signin.html"), "{% if %}").unwrap();
        assert!(ok.validate().unwrap_err()[0].contains("signin.html"));
    }

    #[test]
    fn masks_database_passwords() {
        assert_eq!(mask_password("postgres://u:secret@db/x"), "postgres://u:***@db/x");
        assert!(!mask_password("postgres://u@db/x?sslmode=require&password=secret2").contains("secret2"));
        assert_eq!(mask_password("sqlite://latchkey-data/latchkey.db"), "sqlite://latchkey-data/latchkey.db");
    }
}
