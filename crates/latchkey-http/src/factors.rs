//! The user factors admin API (`/api/v1/users/{id}/factors`) and the QR-code image a TOTP
//! enrollment links to. The image URL carries its own one-time capability (no admin token): it is
//! what an end user's browser loads while enrolling.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use latchkey_core::CoreError;
use latchkey_core::authn::TOTP;
use latchkey_core::store::FactorStore;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::extract::{Admin, PathParams};
use crate::state::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/users/{id}/factors", get(list))
        .route("/api/v1/users/{id}/factors/{factor_id}", delete(remove))
        .route("/api/v1/users/{id}/factors/{factor_id}/qr/{token}", get(qr_code))
}

async fn list(
    _admin: Admin,
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<Json<Value>, ApiError> {
    let user = state.users().get(&id).await?;
    let factors = state.store.list_factors(&user.id).await?;
    let body: Vec<Value> = factors
        .iter()
        .map(|f| {
            let href = state.link(&format!("/api/v1/users/{}/factors/{}", user.id, f.id));
            json!({
                "id": f.id,
                "factorType": TOTP,
                "provider": f.provider.as_str(),
                "vendorName": f.provider.vendor_name(),
                "status": f.status.as_str(),
                "created": f.created.to_iso(),
                "lastUpdated": f.last_updated.to_iso(),
                "profile": {"credentialId": user.login()},
                "_links": {
                    "self": {"href": href, "hints": {"allow": ["GET", "DELETE"]}},
                    "user": {"href": state.link(&format!("/api/v1/users/{}", user.id)), "hints": {"allow": ["GET"]}},
                },
            })
        })
        .collect();
    Ok(Json(Value::Array(body)))
}

async fn remove(
    _admin: Admin,
    State(state): State<AppState>,
    PathParams((id, factor_id)): PathParams<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let user = state.users().get(&id).await?;
    if state.store.delete_factor(&user.id, &factor_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(CoreError::NotFound(format!("{factor_id} (UserFactor)")).into())
    }
}

async fn qr_code(
    State(state): State<AppState>,
    PathParams((id, factor_id, token)): PathParams<(String, String, String)>,
) -> Result<Response, ApiError> {
    let (secret, login) = state.authn().qr_secret(&id, &factor_id, &token).await?;
    let issuer = state.base().trim_start_matches("https://").trim_start_matches("http://").to_owned();
    let label_text = format!("{issuer}:{login}");
    let label = percent_encoding::utf8_percent_encode(&label_text, percent_encoding::NON_ALPHANUMERIC);
    let issuer_param = percent_encoding::utf8_percent_encode(&issuer, percent_encoding::NON_ALPHANUMERIC);
    let uri = format!(
        "otpauth://totp/{label}?secret={secret}&issuer={issuer_param}&algorithm=SHA1&digits=6&period=30"
    );
    let png =
        qr_png(&uri).ok_or_else(|| ApiError::MalformedBody("The QR code could not be drawn.".into()))?;
    Ok(([(header::CONTENT_TYPE, "image/png"), (header::CACHE_CONTROL, "no-store")], png).into_response())
}

/// Draws `text` as a QR code: 6 pixels per module, a 4-module quiet zone, 8-bit greyscale PNG.
fn qr_png(text: &str) -> Option<Vec<u8>> {
    const SCALE: usize = 6;
    const QUIET: usize = 4;
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for (index, color) in colors.iter().enumerate() {
        if *color != qrcode::Color::Dark {
            continue;
        }
        let (mx, my) = (index % modules + QUIET, index / modules + QUIET);
        for y in my * SCALE..(my + 1) * SCALE {
            let row = y * side;
            pixels[row + mx * SCALE..row + (mx + 1) * SCALE].fill(0);
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, u32::try_from(side).ok()?, u32::try_from(side).ok()?);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().ok()?;
    writer.write_image_data(&pixels).ok()?;
    writer.finish().ok()?;
    Some(out)
}
