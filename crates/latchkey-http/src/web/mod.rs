//! The base of every browser-facing feature (hosted pages, browser endpoints, SAML, the demo):
//! cookies and the browser's session ([`cookies`]), pages with their security headers, templates,
//! strings and the error page ([`page`]), forms and their CSRF check ([`forms`], [`csrf`]),
//! checked redirects ([`redirects`]), the auto-posting page ([`mod@auto_post`]) and the shared static
//! assets ([`assets`]).
//!
//! Features build on this module and never on each other; this module knows no feature.

pub(crate) mod assets;
pub(crate) mod auto_post;
pub(crate) mod cookies;
pub(crate) mod csrf;
pub(crate) mod forms;
mod i18n;
pub(crate) mod page;
pub(crate) mod redirects;
mod templates;

pub use templates::Pages;

pub(crate) use auto_post::{auto_post, post_message};
pub(crate) use cookies::{browser_session, browser_session_id, cookie_value};
pub(crate) use forms::Form;
pub(crate) use page::{BrowserError, Ui, error_page, error_page_with_detail, redirect, see_other};
pub(crate) use redirects::{checked_from_uri, is_local_path, sign_in_url};
