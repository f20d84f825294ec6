//! `latchkey serve`: telemetry, store, migrations, the HTTP server, and a graceful stop (in-flight
//! requests finish, then the database pools close).

use std::sync::Arc;

use latchkey_http::{AppState, HttpConfig};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, Settings};

pub async fn run(settings: Settings, demo: bool) -> Result<(), String> {
    init_tracing(settings.log_format);
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;

    let store = crate::open_store(&settings).await?;
    let applied = store.migrate().await.map_err(|e| format!("migrations failed: {e}"))?;
    tracing::info!(applied, backend = ?store.backend(), "database ready");

    let mut http = HttpConfig::new(&settings.public_base());
    http.body_limit = settings.body_limit_bytes;
    http.metrics = Some(Arc::new(move || metrics.render()));
    let state = AppState::new(store.clone(), http);

    if demo {
        crate::demo::seed(&state, &settings).await?;
    }

    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
    tracing::info!(listen = %settings.listen, public_url = %settings.public_base(), "latchkey is serving");
    axum::serve(listener, latchkey_http::router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| format!("server error: {e}"))?;
    store.close().await;
    tracing::info!("stopped cleanly");
    Ok(())
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
