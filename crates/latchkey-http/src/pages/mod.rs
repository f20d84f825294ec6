//! The hosted pages: the sign-in page (`/login/login.htm`) with its MFA and password steps, the
//! end-user dashboard (`/app/UserHome`), the sessions page and the sign-out form.
//!
//! The pages work without JavaScript: each step is a form posted to the server, which runs the
//! same core state machine as `/api/v1/authn` (through the same functions, so the throttling,
//! lockout, failure floor and system log are the API's) and answers with the next page. On
//! SUCCESS the session token is redeemed under the session-token rule, as
//! `/login/sessionCookieRedirect` does, and the browser goes to `fromURI` only when it is a local
//! path or an absolute URL on this IdP or a trusted REDIRECT origin.
//!
//! Invariants: every POST is CSRF-checked (`web::csrf`) before anything else; every page carries a
//! strict Content-Security-Policy and the other security headers (`web::page`); every value in a
//! page is escaped by the templates; the `stateToken` never appears in a page (see `signin::TX_COOKIE`).

mod home;
mod signin;

use axum::Router;

use crate::state::AppState;

/// Where signed-in users land when `fromURI` is absent or refused.
const HOME: &str = "/app/UserHome";
const SESSIONS_PAGE: &str = "/app/UserHome/sessions";

pub(crate) fn routes() -> Router<AppState> {
    Router::new().merge(signin::routes()).merge(home::routes())
}
