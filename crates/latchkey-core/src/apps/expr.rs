//! The expression subset Latchkey evaluates for SAML attribute values and the subject NameID
//! template (a small part of Okta Expression Language).
//!
//! Supported: `user.<attribute>` (any profile attribute, plus `userName`/`login` and `id`),
//! `source.<attribute>` (the same, as Okta's built-in templates spell it), string literals in
//! single or double quotes, and concatenation with `+`. Anything else is refused when the app is
//! saved, so an expression never fails or silently yields nothing at sign-in time. Templates wrap
//! one expression in `${…}` (`${user.userName}`).

use serde_json::Value;

use crate::users::User;

/// A parsed expression: the concatenation of its terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expression(Vec<Term>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    Literal(String),
    Attribute(String),
}

/// Longest expression accepted (they are short by nature; the cap bounds parsing work).
const MAX_EXPRESSION: usize = 1024;

impl Expression {
    /// Parses `text`; the error says what is not supported.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() > MAX_EXPRESSION {
            return Err(format!("expressions are limited to {MAX_EXPRESSION} characters"));
        }
        let mut terms = Vec::new();
        let mut rest = text.trim();
        loop {
            let (term, after) = parse_term(rest)?;
            terms.push(term);
            let after = after.trim_start();
            if after.is_empty() {
                break;
            }
            rest = after.strip_prefix('+').ok_or_else(|| unsupported(text))?.trim_start();
        }
        Ok(Self(terms))
    }

    /// Parses a template of the form `${expression}`.
    pub fn parse_template(text: &str) -> Result<Self, String> {
        let inner = text
            .trim()
            .strip_prefix("${")
            .and_then(|t| t.strip_suffix('}'))
            .ok_or_else(|| "must have the form ${user.attribute}".to_owned())?;
        Self::parse(inner)
    }

    /// The value for `user`; `None` when every attribute it names is absent or null.
    pub fn evaluate(&self, user: &User) -> Option<String> {
        let mut out = String::new();
        let mut any_attribute = false;
        let mut any_present = false;
        for term in &self.0 {
            match term {
                Term::Literal(text) => out.push_str(text),
                Term::Attribute(name) => {
                    any_attribute = true;
                    if let Some(value) = attribute(user, name) {
                        any_present = true;
                        out.push_str(&value);
                    }
                }
            }
        }
        (any_present || !any_attribute).then_some(out)
    }
}

fn unsupported(text: &str) -> String {
    format!("unsupported expression '{text}': use user.<attribute>, quoted strings and +")
}

fn parse_term(text: &str) -> Result<(Term, &str), String> {
    let mut chars = text.char_indices();
    match chars.next() {
        Some((_, quote @ ('"' | '\''))) => {
            let body = &text[1..];
            let end = body.find(quote).ok_or_else(|| "unterminated string literal".to_owned())?;
            Ok((Term::Literal(body[..end].to_owned()), &body[end + 1..]))
        }
        Some(_) => {
            let end = text
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_'))
                .unwrap_or(text.len());
            let path = &text[..end];
            let name = path
                .strip_prefix("user.")
                .or_else(|| path.strip_prefix("source."))
                .filter(|n| !n.is_empty() && !n.contains('.'))
                .ok_or_else(|| unsupported(text))?;
            Ok((Term::Attribute(name.to_owned()), &text[end..]))
        }
        None => Err("empty expression".to_owned()),
    }
}

fn attribute(user: &User, name: &str) -> Option<String> {
    match name {
        "userName" | "login" => return Some(user.login().to_owned()),
        "id" => return Some(user.id.clone()),
        _ => {}
    }
    match user.profile.as_map().get(name)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(items) => Some(items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(",")),
        Value::Object(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_supported_subset() {
        assert!(Expression::parse("user.email").is_ok());
        assert!(Expression::parse("user.firstName + \" \" + user.lastName").is_ok());
        assert!(Expression::parse_template("${user.userName}").is_ok());
        assert!(Expression::parse_template("${source.login}").is_ok());
    }

    #[test]
    fn refuses_what_it_cannot_evaluate() {
        for bad in
            ["String.toUpperCase(user.login)", "user.", "user.a.b", "app.x", "user.email +", "'open", ""]
        {
            assert!(Expression::parse(bad).is_err(), "{bad}");
        }
        assert!(Expression::parse_template("user.login").is_err());
    }
}
