//! `latchkey serve`: telemetry, store, migrations, the HTTP server, and a graceful stop (in-flight
//! requests finish, then the database pools close).

use std::sync::Arc;

use latchkey_core::events::{Actor, Event, Target};
use latchkey_core::store::EventStore as _;
use latchkey_core::store::PolicyStore as _;
use latchkey_http::{AppState, HttpConfig};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, Settings};

pub async fn run(settings: Settings, demo: bool) -> Result<(), String> {
    init_tracing(settings.log_format);
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;

    let master_key = crate::keys::load(&settings.master_key)?;
    let mut store = crate::open_store(&settings).await?;
    store.claim_server().await.map_err(|e| e.to_string())?;
    let applied = store.migrate().await.map_err(|e| format!("migrations failed: {e}"))?;
    let now = latchkey_core::Clock::now(&latchkey_core::SystemClock);
    store
        .ensure_policies(&latchkey_core::policy::default_rows(now))
        .await
        .map_err(|e| format!("cannot create the default policies: {e}"))?;
    tracing::info!(applied, backend = ?store.backend(), "database ready");

    let mut http = HttpConfig::new(&settings.public_base());
    http.body_limit = settings.body_limit_bytes;
    http.metrics = Some(Arc::new(move || metrics.render()));
    http.metrics_token = settings.metrics_token.clone();
    http.signout_requires_same_site = settings.signout_requires_same_site;
    http.authn_limits = settings.authn_limits;
    http.custom_domains =
        settings.custom_domains.iter().map(|u| u.as_str().trim_end_matches('/').to_owned()).collect();
    http.session_token_precedence = settings.session_token_precedence;
    http.pages_dir = settings.pages_dir.clone();
    http.test_sp = settings.test_sp || demo;
    http.strict_transport_security = latchkey_http::strict_transport_security(settings.hsts_max_age_secs);
    http.org_id = store
        .org_setting("org_id", &latchkey_core::ids::new_id(latchkey_core::ids::IdKind::Org))
        .await
        .map_err(|e| format!("cannot read the organisation id: {e}"))?;
    let state = AppState::new(store.clone(), http, master_key);
    // Generated on the first start of the first node; every node signs with the shared key.
    let kid = latchkey_http::ensure_signing_key(&state).await?;
    tracing::info!(kid, "SAML signing key ready");
    let purge = tokio::spawn(purge_expired(store.clone()));
    let back_channel = latchkey_http::backchannel::spawn_worker(state.clone())?;

    if demo {
        crate::demo::seed(&state, &settings).await?;
    } else if settings.test_sp {
        latchkey_http::demo::ensure_demo_app(&state, &[]).await?;
    }

    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
    tracing::info!(listen = %settings.listen, public_url = %settings.public_base(), "latchkey is serving");
    crate::listener::serve(listener, latchkey_http::router(state), shutdown_signal()).await;
    purge.abort();
    back_channel.abort();
    store.close().await;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Every minute, marks expired sessions ended (logged at the time they expired) and deletes
/// expired transactions, tokens and throttling windows.
async fn purge_expired(store: latchkey_store::Store) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tick.tick().await;
        let now = latchkey_core::Clock::now(&latchkey_core::SystemClock);
        match latchkey_core::store::SessionStore::expire_sessions(&store, now).await {
            Ok(expired) => {
                for (session_id, user_id, expired_at) in expired {
                    let event = Event::new(
                        "user.session.end",
                        "User session ended",
                        "SUCCESS",
                        Actor::system(),
                        expired_at,
                    )
                    .reason("EXPIRED")
                    .target(Target::new(&session_id, "Session", &user_id))
                    .session(&session_id);
                    if let Err(e) = store.insert_event(&event).await {
                        tracing::warn!(error = %e, "could not log a session expiry");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "expiring sessions failed"),
        }
        if let Err(e) = latchkey_core::store::SamlStore::purge_saml(&store, now).await {
            tracing::warn!(error = %e, "purging expired SAML state failed");
        }
        if let Err(e) = store.purge_oauth(now).await {
            tracing::warn!(error = %e, "purging expired OAuth state failed");
        }
        match latchkey_core::store::AuthnStore::purge_expired(&store, now).await {
            Ok(removed) => tracing::debug!(removed, "purged expired authentication state"),
            Err(e) => tracing::warn!(error = %e, "purging expired authentication state failed"),
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_env("LATCHKEY_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}
