//! Latchkey's core: the domain types, rules and use cases of an Okta-compatible identity provider.
//!
//! This crate owns what Latchkey *means*, independent of how it is reached or stored: it knows no HTTP
//! (the `latchkey-http` crate maps requests onto these use cases) and no SQL (the `latchkey-store`
//! crate implements the storage ports declared in [`store`]). Everything here is runtime-agnostic;
//! CPU-heavy work such as password hashing is reached through the [`password::PasswordHashing`] port
//! so that the caller decides where it runs.

pub mod apps;
pub mod authn;
pub mod clock;
pub mod crypto;
pub(crate) mod der;
pub mod error;
pub mod events;
pub mod expr;
pub mod filter;
pub mod groups;
pub mod ids;
pub mod offload;
pub mod oidc;
pub mod password;
pub mod policy;
pub mod saml;
pub mod sessions;
pub mod signing_keys;
pub mod signon;
pub mod store;
pub mod tokens;
pub mod totp;
pub mod users;

pub use clock::{Clock, SystemClock, Timestamp};
pub use error::{CoreError, FieldError, StoreError};
pub mod origins;
