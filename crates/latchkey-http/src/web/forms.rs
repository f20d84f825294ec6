//! Posted forms: `application/x-www-form-urlencoded` bodies, parsed once (the router's body limit
//! applies before).

/// A posted `application/x-www-form-urlencoded` body (the body limit of the router applies).
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    pub(crate) fn parse(body: &[u8]) -> Self {
        Form(url::form_urlencoded::parse(body).into_owned().collect())
    }

    /// A field's value; values with a NUL (which nothing may store) read as absent.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.contains('\0'))
    }
}
