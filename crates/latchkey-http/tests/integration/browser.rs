//! A browser without JavaScript, shared by the tests of the browser-facing endpoints (hosted pages,
//! `sid` cookie, SAML): one cookie jar across requests, no redirect followed, and the [`Page`] each
//! request returns.
//!
//! The jar keeps every cookie the server sets, by name (paths and domains are ignored: the tests
//! only need names). A `Set-Cookie` with `Max-Age=0` deletes it (RFC 6265 §5.2.2, §5.3), and so,
//! here, does one with an empty value (the server clears a cookie with both). Every request carries
//! the jar in one `Cookie` header (RFC 6265 §5.4), or none while the jar is empty. A test that needs
//! a particular `Cookie` header fills a jar first ([`Browser::with_cookies`],
//! [`Browser::put_cookie`]); [`Browser::default`] sends no cookie at all.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::request::Builder;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

use crate::support::{App, BASE};

/// A browser: its cookies for the IdP, by name.
#[derive(Default)]
pub struct Browser {
    cookies: BTreeMap<String, String>,
}

/// What one request returned.
pub struct Page {
    pub status: StatusCode,
    /// `Location`, when the response has one.
    pub location: Option<String>,
    /// Every `Set-Cookie` of the response, in order.
    pub set_cookies: Vec<String>,
    /// `Content-Security-Policy`.
    pub csp: Option<String>,
    /// All the response's headers.
    pub headers: HeaderMap,
    pub body: String,
}

/// `text` with the HTML character references the IdP's pages write turned back into characters.
fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&#x2f;", "/")
        .replace("&amp;", "&")
}

impl Page {
    /// `Location`, or "" when the response has none.
    pub fn location(&self) -> &str {
        self.location.as_deref().unwrap_or("")
    }

    /// The first `Set-Cookie` for cookie `name`, whole (value and attributes).
    pub fn set_cookie(&self, name: &str) -> Option<&str> {
        let prefix = format!("{name}=");
        self.set_cookies.iter().find(|c| c.starts_with(&prefix)).map(String::as_str)
    }

    /// The value the first `Set-Cookie` for `name` gives it: `None` when the response sets no such
    /// cookie or deletes it.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        let cookie = self.set_cookie(name)?;
        let (pair, attributes) = cookie.split_once(';').unwrap_or((cookie, ""));
        let value = &pair[name.len() + 1..];
        (!value.is_empty() && !attributes.contains("Max-Age=0")).then_some(value)
    }

    /// The value of the first `name="<field>" value="…"` in the page (a hidden field of an
    /// auto-posting page, a form field), unescaped.
    pub fn field(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&marker)? + marker.len();
        let end = self.body[start..].find('"')? + start;
        Some(unescape(&self.body[start..end]))
    }

    /// Where the page's first form posts to.
    pub fn form_action(&self) -> Option<String> {
        let start = self.body.find("action=\"")? + 8;
        let end = self.body[start..].find('"')? + start;
        Some(unescape(&self.body[start..end]))
    }

    /// The decoded XML of the SAMLResponse an auto-posting page carries (SAML bindings §3.5.4).
    pub fn response_xml(&self) -> String {
        let b64 = self.field("SAMLResponse").unwrap_or_else(|| panic!("no SAMLResponse in: {}", self.body));
        String::from_utf8(STANDARD.decode(b64).unwrap()).unwrap()
    }

    /// The page posts nothing anywhere: no form, no SAMLResponse.
    pub fn posts_nothing(&self) -> bool {
        !self.body.contains("<form") && !self.body.contains("name=\"SAMLResponse\"")
    }
}

impl Browser {
    /// A browser holding `cookies`, as if the server had set them.
    pub fn with_cookies(cookies: &[(&str, &str)]) -> Self {
        let mut browser = Self::default();
        for (name, value) in cookies {
            browser.put_cookie(name, value);
        }
        browser
    }

    /// The value the jar holds for cookie `name`.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(String::as_str)
    }

    /// Puts cookie `name` in the jar (replacing any), as a forged or copied cookie would be.
    pub fn put_cookie(&mut self, name: &str, value: &str) {
        self.cookies.insert(name.to_owned(), value.to_owned());
    }

    /// Keeps the cookies `set_cookies` set, and drops the ones they delete.
    fn take(&mut self, set_cookies: &[String]) {
        for text in set_cookies {
            let (pair, attributes) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    /// Sends `req` with `body` and the jar's cookies; takes the cookies of the response.
    pub async fn send(&mut self, app: &App, mut req: Builder, body: Body) -> Page {
        if !self.cookies.is_empty() {
            let header = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
            req = req.header("cookie", header);
        }
        let req = req.body(body).unwrap();
        let uri = req.uri().to_string();
        let res = app.router.clone().oneshot(req).await.unwrap();
        let (status, headers) = (res.status(), res.headers().clone());
        let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
        let (location, csp) = (header("location"), header("content-security-policy"));
        let set_cookies: Vec<String> =
            headers.get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
        self.take(&set_cookies);
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{uri}: {}", String::from_utf8_lossy(&bytes));
        Page {
            status,
            location,
            set_cookies,
            csp,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// A request as a link or an SP's form would send it: `form`, when given, is the
    /// `application/x-www-form-urlencoded` body, with no `Origin` or `Sec-Fetch-Site`.
    pub async fn request(&mut self, app: &App, method: Method, uri: &str, form: Option<String>) -> Page {
        let req = Request::builder().method(method).uri(uri);
        match form {
            Some(form) => {
                let req = req.header("content-type", "application/x-www-form-urlencoded");
                self.send(app, req, Body::from(form)).await
            }
            None => self.send(app, req, Body::empty()).await,
        }
    }

    pub async fn get(&mut self, app: &App, uri: &str) -> Page {
        self.request(app, Method::GET, uri, None).await
    }

    /// Posts a form as a browser would from one of the IdP's pages (same origin).
    pub async fn post(&mut self, app: &App, uri: &str, fields: &[(&str, &str)]) -> Page {
        let body: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
        let req = Request::post(uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", BASE)
            .header("sec-fetch-site", "same-origin");
        self.send(app, req, Body::from(body)).await
    }

    /// Submits the form of `page` that posts to `action`: its hidden fields (the CSRF token among
    /// them), then `fields`.
    pub async fn submit(&mut self, app: &App, page: &Page, action: &str, fields: &[(&str, &str)]) -> Page {
        let marker = format!("action=\"{action}\"");
        let start = page.body.find(&marker).unwrap_or_else(|| panic!("no form to {action} in {}", page.body));
        let form = &page.body[start..start + page.body[start..].find("</form>").unwrap()];
        let mut all: Vec<(String, String)> = Vec::new();
        for input in form.split("<input").skip(1) {
            if input.contains("type=\"hidden\"") {
                let name = input.split("name=\"").nth(1).unwrap().split('"').next().unwrap();
                let value = input.split("value=\"").nth(1).unwrap().split('"').next().unwrap();
                all.push((name.to_owned(), unescape(value)));
            }
        }
        for (k, v) in fields {
            all.push(((*k).to_owned(), (*v).to_owned()));
        }
        let pairs: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.post(app, action, &pairs).await
    }

    /// Signs in on the hosted sign-in page (`/login/login.htm{query}`) with `login`, `password` and
    /// `extra` fields; returns the answer to the form.
    pub async fn sign_in(
        &mut self,
        app: &App,
        query: &str,
        login: &str,
        password: &str,
        extra: &[(&str, &str)],
    ) -> Page {
        let page = self.get(app, &format!("/login/login.htm{query}")).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let mut fields = vec![("username", login), ("password", password)];
        fields.extend_from_slice(extra);
        self.submit(app, &page, "/login/login.htm", &fields).await
    }
}
