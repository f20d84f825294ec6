//! `serve --demo`: seeds a small organisation (demo users with known passwords and an admin API
//! token) and prints how to try it. Idempotent: existing demo users are left as they are (a
//! password changed since is not printed), and each start replaces the previous demo token.

use latchkey_core::CoreError;
use latchkey_core::store::ApiTokenStore;
use latchkey_core::tokens::ApiToken;
use latchkey_core::users::service::NewUser;
use latchkey_http::AppState;
use serde_json::json;

use crate::config::Settings;

/// (login, first name, last name, password, groups). Demo only: these passwords are printed on
/// purpose. The test SP is assigned to the `Staff` group.
const DEMO_USERS: &[(&str, &str, &str, &str, &[&str])] = &[
    ("alice@example.com", "Alice", "Anders", "Wonderland-2024", &["Front desk", "Staff"]),
    ("bob@example.com", "Bob", "Berger", "Builder-2024!", &["Staff"]),
];

pub async fn seed(state: &AppState, settings: &Settings) -> Result<(), String> {
    let users = state.users();
    let mut members = Vec::new();
    for (login, first, last, password, groups) in DEMO_USERS {
        let profile = json!({"login": login, "email": login, "firstName": first, "lastName": last});
        let new = NewUser {
            profile: profile.as_object().cloned().unwrap_or_default(),
            password: Some((*password).to_owned()),
            activate: true,
            expire_password: false,
        };
        match users.create(new).await {
            Ok(_) | Err(CoreError::Validation { .. }) => {}
            Err(e) => return Err(format!("demo seeding failed: {e}")),
        }
        if let Ok(user) = users.get(login).await {
            members.push((user.id, groups.to_vec()));
        }
    }
    let app = latchkey_http::demo::ensure_demo_app(state, &members).await?;
    state.store.delete_api_tokens_named("demo").await.map_err(|e| format!("demo token: {e}"))?;
    let (token, secret) = ApiToken::issue("demo", state.clock.now());
    state.store.insert_api_token(&token).await.map_err(|e| format!("demo token: {e}"))?;
    let base = settings.public_base();
    let mut text = String::from("\n  Latchkey demo organisation is ready.\n\n");
    text.push_str("  Demo users (login / password):\n");
    for (login, _, _, password, _) in DEMO_USERS {
        let current = users.get(login).await.ok().and_then(|u| u.password_hash);
        let unchanged = current.is_some_and(|hash| latchkey_core::password::verify(password, &hash));
        let shown = if unchanged { *password } else { "(changed since seeding; not shown)" };
        text.push_str(&format!("    {login:<20} {shown}\n"));
    }
    // Groups get their own block: a user's line holds the login and the password alone, so
    // that the password can be copied (and parsed) from it.
    text.push_str("\n  Demo groups (the demo apps are assigned to Staff):\n");
    for group in latchkey_http::demo::DEMO_GROUPS {
        let members: Vec<&str> = DEMO_USERS
            .iter()
            .filter(|(.., groups)| groups.contains(&group))
            .map(|(login, ..)| *login)
            .collect();
        text.push_str(&format!("    {group:<20} {}\n", members.join(", ")));
    }
    text.push_str(&format!("\n  Admin API token (new on every start): {}\n\n", secret.expose()));
    text.push_str("  Shared-browser demo (the flow Latchkey exists for):\n");
    text.push_str(&format!("    1. Kiosk portal:  {base}{}\n", latchkey_http::demo::KIOSK));
    text.push_str("       sign in as one demo user, then as the other, in the same browser\n");
    text.push_str(&format!("    2. Test SP:       {base}{}\n", latchkey_http::demo::SP_HOME));
    text.push_str("       shows who arrived and with which attributes (their groups among them)\n");
    text.push_str(&format!("    3. Test RP:       {base}{}\n", latchkey_http::demo::RP_HOME));
    text.push_str(
        "       the same story over OpenID Connect (choose it at the kiosk); when the next person's\n",
    );
    text.push_str(
        "       token ends the session, Latchkey's back-channel logout ends the RP's session too\n",
    );
    text.push_str(&format!(
        "    Embed link of the demo app \"{}\": {base}/home/{}/{}/{}\n",
        app.label, app.name, app.id, app.link_id
    ));
    text.push_str(&format!(
        "    Hosted sign-in:   {base}/login/login.htm    Dashboard: {base}/app/UserHome\n\n"
    ));
    text.push_str("  Try:\n");
    text.push_str(&format!("    curl -H 'Authorization: SSWS {}' {base}/api/v1/users\n\n", secret.expose()));
    eprint!("{text}");
    Ok(())
}
