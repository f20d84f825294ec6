//! The auto-posting page: an HTML form that the browser posts to another site on its own (SAML's
//! HTTP-POST binding, SAML bindings §3.5.4), with a Continue button when JavaScript is off.
//!
//! The page's one inline script is allowed by a nonce fresh for each response; its CSP lets the
//! form go to the target's origin only, and every value is HTML-attribute-escaped.

use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// A page that posts `fields` (name, value) to `action` as soon as it loads.
pub(crate) fn auto_post(action: &str, fields: &[(&str, &str)]) -> Response {
    let nonce = latchkey_core::ids::random_alphanumeric(24);
    let html = form_html(action, fields, Some(&nonce));
    let form_origin = latchkey_core::origins::origin_of_url(action).unwrap_or_else(|| "'none'".to_owned());
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; form-action {form_origin}; frame-ancestors 'none'; base-uri 'none'"
    );
    script_page(html, &csp)
}

/// A page whose one script runs as it loads: not cached, not sniffed, no referrer, under `csp`.
fn script_page(html: String, csp: &str) -> Response {
    let mut response = (StatusCode::OK, html).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(value) = HeaderValue::from_str(csp) {
        headers.insert(CONTENT_SECURITY_POLICY, value);
    }
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    response
}

/// Okta's `okta_post_message` answer: a page that hands `fields` to the window that opened it (a
/// popup) or holds it (a hidden iframe), addressed to `target_origin` only, so no other origin can
/// read a code or a token. The data is JSON in a script, with `<` escaped so that no value can
/// end the script element.
pub(crate) fn post_message(target_origin: &str, fields: &[(&str, &str)]) -> Response {
    let nonce = latchkey_core::ids::random_alphanumeric(24);
    let data: serde_json::Map<String, serde_json::Value> =
        fields.iter().map(|(k, v)| ((*k).to_owned(), serde_json::Value::String((*v).to_owned()))).collect();
    let json = |value: serde_json::Value| value.to_string().replace('<', "\\u003c");
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Continue</title></head>\n<body>\n\
         <script nonce=\"{nonce}\">(window.opener || window.parent).postMessage({data}, {origin});</script>\n</body></html>\n",
        data = json(serde_json::Value::Object(data)),
        origin = json(serde_json::Value::String(target_origin.to_owned())),
    );
    // Framable on purpose: okta-auth-js loads it in a hidden iframe; it posts to one origin only.
    script_page(html, &format!("default-src 'none'; script-src 'nonce-{nonce}'; base-uri 'none'"))
}

fn form_html(action: &str, fields: &[(&str, &str)], nonce: Option<&str>) -> String {
    let mut html = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Continue</title></head>\n<body>\n",
    );
    html.push_str("<form method=\"post\" action=\"");
    html_attr(&mut html, action);
    html.push_str("\">\n");
    for (name, value) in fields {
        html.push_str("<input type=\"hidden\" name=\"");
        html_attr(&mut html, name);
        html.push_str("\" value=\"");
        html_attr(&mut html, value);
        html.push_str("\">\n");
    }
    html.push_str(
        "<noscript><p>JavaScript is off. Press Continue to go on.</p>\
         <button type=\"submit\">Continue</button></noscript>\n</form>\n",
    );
    match nonce {
        Some(nonce) => {
            html.push_str("<script nonce=\"");
            html_attr(&mut html, nonce);
            html.push_str("\">");
        }
        None => html.push_str("<script>"),
    }
    html.push_str("document.forms[0].submit();</script>\n</body></html>\n");
    html
}

/// HTML attribute escaping (a superset of what a double-quoted attribute needs). Runs without a
/// special character are copied whole, found with a byte scan (a `str::find` over a set of chars
/// decodes every char; the value is a SAMLResponse of ~12 KB on every sign-on).
fn html_attr(out: &mut String, value: &str) {
    let bytes = value.as_bytes();
    let mut copied = 0;
    for (at, byte) in bytes.iter().enumerate() {
        let escaped = match byte {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#39;",
            _ => continue,
        };
        // `at` is an ASCII byte, so both slices end on char boundaries.
        out.push_str(value.get(copied..at).unwrap_or_default());
        out.push_str(escaped);
        copied = at + 1;
    }
    out.push_str(value.get(copied..).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::{form_html, html_attr, post_message};

    #[test]
    fn attribute_escaping_keeps_every_other_character() {
        let mut out = String::new();
        html_attr(&mut out, "é<ü&\"日本'>z");
        assert_eq!(out, "é&lt;ü&amp;&quot;日本&#39;&gt;z");
        let mut plain = String::new();
        html_attr(&mut plain, "PD94bWwg+/=");
        assert_eq!(plain, "PD94bWwg+/=");
    }

    #[tokio::test]
    async fn a_posted_message_cannot_end_its_script_and_names_its_origin() {
        let response = post_message("https://app.test", &[("state", "</script><script>alert(1)</script>")]);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let html = String::from_utf8(body.to_vec()).unwrap();
        assert_eq!(html.matches("</script>").count(), 1, "{html}");
        assert!(html.contains(r#"postMessage({"state":"\u003c/script>\u003cscript>alert(1)\u003c/script>"}, "https://app.test")"#), "{html}");
    }

    #[test]
    fn the_form_escapes_everything_and_works_without_javascript() {
        let html = form_html(
            "https://sp.test/acs?a=1&b=\"2\"",
            &[("SAMLResponse", "PD94+/="), ("RelayState", "<script>alert('x')</script>")],
            Some("n0nce\"x"),
        );
        assert!(html.contains("action=\"https://sp.test/acs?a=1&amp;b=&quot;2&quot;\""));
        assert!(html.contains("name=\"SAMLResponse\" value=\"PD94+/=\""));
        assert!(html.contains("value=\"&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;\""));
        assert!(html.contains("<noscript>") && html.contains("<button type=\"submit\">Continue</button>"));
        assert!(html.contains("<script nonce=\"n0nce&quot;x\">document.forms[0].submit();</script>"));
        assert_eq!(html.matches("<script").count(), 1, "only our script tag");
        let plain = form_html("https://sp.test/slo", &[("SAMLRequest", "AA==")], None);
        assert!(plain.contains("<script>document.forms[0].submit();</script>"));
        assert!(!plain.contains("RelayState"));
        assert_eq!(plain, include_str!("../../tests/snapshots/post-form.golden.html"));
    }
}
