//! What `GET /api/v1/apps` may ask for: Okta's `q` (a prefix of the label or name) and `filter`
//! (`status eq "ACTIVE"`, `name eq "…"`, `user.id eq "00u…"`, joined with `and`), parsed here so
//! that the store can apply them before paging, never to a page already cut.

use super::AppStatus;
use crate::error::CoreError;

/// One page of apps that match every condition given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppQuery {
    /// Ids strictly after this one (the paging cursor).
    pub after: Option<String>,
    pub limit: u32,
    /// Lower-cased prefix of the label (or of the name).
    pub q: Option<String>,
    pub status: Option<AppStatus>,
    pub name: Option<String>,
    /// Apps this user is assigned to.
    pub user_id: Option<String>,
}

impl AppQuery {
    /// Adds the conditions of an Okta `filter` expression; anything else is refused by name.
    pub fn with_filter(mut self, filter: &str) -> Result<Self, CoreError> {
        for (attribute, value) in parse_conjunction(filter)? {
            let slot = match attribute.as_str() {
                "status" => {
                    let status = AppStatus::parse(&value).ok_or_else(|| {
                        CoreError::InvalidQuery(format!("status must be ACTIVE or INACTIVE, not {value:?}"))
                    })?;
                    self.status = Some(status);
                    continue;
                }
                "name" => &mut self.name,
                "user.id" => &mut self.user_id,
                "group.id" => {
                    return Err(CoreError::InvalidQuery(
                        "group.id: Latchkey has no groups (apps are assigned to users)".to_owned(),
                    ));
                }
                other => {
                    return Err(CoreError::InvalidQuery(format!(
                        "apps can be filtered by status, name and user.id, not {other:?}"
                    )));
                }
            };
            if slot.replace(value).is_some() {
                return Err(CoreError::InvalidQuery(format!("{attribute} appears more than once")));
            }
        }
        Ok(self)
    }
}

/// `attr eq "value" [and attr eq "value"]…`, with `\"` and `\\` escapes inside values.
fn parse_conjunction(filter: &str) -> Result<Vec<(String, String)>, CoreError> {
    let invalid = |why: &str| CoreError::InvalidQuery(format!("filter: {why}"));
    let mut rest = filter.trim_start();
    let mut out = Vec::new();
    loop {
        let end =
            rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_')).unwrap_or(rest.len());
        if end == 0 {
            return Err(invalid("expected an attribute name"));
        }
        let attribute = rest[..end].to_owned();
        rest = rest[end..].trim_start();
        rest = strip_word(rest, "eq").ok_or_else(|| invalid("only the eq operator is supported"))?;
        let value;
        (value, rest) = quoted(rest).ok_or_else(|| invalid("a value must be a quoted string"))?;
        out.push((attribute, value));
        rest = rest.trim_start();
        if rest.is_empty() {
            return Ok(out);
        }
        rest = strip_word(rest, "and").ok_or_else(|| invalid("conditions must be joined with and"))?;
    }
}

/// `rest` without a leading keyword (any case) followed by white space.
fn strip_word<'a>(rest: &'a str, word: &str) -> Option<&'a str> {
    let head = rest.get(..word.len())?;
    let tail = &rest[word.len()..];
    (head.eq_ignore_ascii_case(word) && tail.starts_with(char::is_whitespace)).then(|| tail.trim_start())
}

/// A leading `"…"` string, unescaped, and what follows it.
fn quoted(rest: &str) -> Option<(String, &str)> {
    let mut chars = rest.strip_prefix('"')?.char_indices();
    let mut value = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &rest[i + 2..])),
            '\\' => value.push(chars.next()?.1),
            c => value.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(filter: &str) -> Result<AppQuery, CoreError> {
        AppQuery::default().with_filter(filter)
    }

    #[test]
    fn okta_app_filters_become_conditions() {
        let q = query(r#"status eq "INACTIVE" AND user.id eq "00u1" and name eq "a \"b\" \\ c""#).unwrap();
        assert_eq!(q.status, Some(AppStatus::Inactive));
        assert_eq!(q.user_id.as_deref(), Some("00u1"));
        assert_eq!(q.name.as_deref(), Some(r#"a "b" \ c"#));
        assert_eq!(query(r#"name eq "x and y""#).unwrap().name.as_deref(), Some("x and y"));
    }

    #[test]
    fn anything_else_is_refused_with_a_reason() {
        for (filter, why) in [
            (r#"bogus eq "x""#, "not \"bogus\""),
            (r#"group.id eq "00g1""#, "no groups"),
            (r#"status eq "DELETED""#, "ACTIVE or INACTIVE"),
            (r#"name sw "x""#, "only the eq operator"),
            (r#"name eq x"#, "quoted string"),
            (r#"name eq "x"#, "quoted string"),
            (r#"name eq "x" or name eq "y""#, "joined with and"),
            (r#"name eq "x" and name eq "y""#, "more than once"),
            ("", "attribute name"),
        ] {
            match query(filter) {
                Err(CoreError::InvalidQuery(message)) => {
                    assert!(message.contains(why), "{filter}: {message}")
                }
                other => panic!("{filter}: {other:?}"),
            }
        }
    }
}
