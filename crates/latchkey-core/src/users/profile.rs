//! User profiles: Okta's default user schema (base attributes only), validation and merging.
//!
//! Okta refuses attributes its schema does not define (`E0000001`, "Property name 'x' is not defined
//! in profile") and requires `login`, `email`, `firstName` and `lastName`; `login` must look like an
//! email address. Values are strings (or null, which removes an optional attribute on update).

use serde_json::{Map, Value};

use crate::error::{CoreError, FieldError};

/// (attribute, maximum length in characters) for every attribute of Okta's default user schema.
const ATTRIBUTES: &[(&str, usize)] = &[
    ("login", 100),
    ("email", 100),
    ("secondEmail", 100),
    ("firstName", 50),
    ("lastName", 50),
    ("middleName", 50),
    ("honorificPrefix", 50),
    ("honorificSuffix", 50),
    ("title", 100),
    ("displayName", 100),
    ("nickName", 100),
    ("profileUrl", 1024),
    ("primaryPhone", 100),
    ("mobilePhone", 100),
    ("streetAddress", 1024),
    ("city", 128),
    ("state", 128),
    ("zipCode", 50),
    ("countryCode", 2),
    ("postalAddress", 4096),
    ("preferredLanguage", 64),
    ("locale", 64),
    ("timezone", 64),
    ("userType", 100),
    ("employeeNumber", 100),
    ("costCenter", 100),
    ("organization", 100),
    ("division", 100),
    ("department", 100),
    ("managerId", 100),
    ("manager", 100),
];

const REQUIRED: [&str; 4] = ["login", "email", "firstName", "lastName"];

/// A validated profile: only schema attributes, all string values, required ones present.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Profile(Map<String, Value>);

impl Profile {
    /// Validates a complete profile (create, or PUT which replaces the whole profile).
    pub fn new(attributes: Map<String, Value>) -> Result<Self, CoreError> {
        let mut causes = Vec::new();
        let mut clean = Map::new();
        for (name, value) in attributes {
            match check_attribute(&name, &value) {
                Err(cause) => causes.push(cause),
                Ok(None) => {}
                Ok(Some(text)) => {
                    clean.insert(name, Value::String(text));
                }
            }
        }
        for name in REQUIRED {
            if !clean.contains_key(name) && !causes.iter().any(|c| c.field == name) {
                causes.push(FieldError::new(name, "The field cannot be left blank"));
            }
        }
        CoreError::from_causes(causes)?;
        Ok(Self(clean))
    }

    /// Restores a profile read from storage, where it was validated on the way in.
    pub fn from_stored(attributes: Map<String, Value>) -> Self {
        Self(attributes)
    }

    /// Okta's partial update (POST): given attributes replace, `null` removes, the rest stay.
    pub fn merged(&self, changes: Map<String, Value>) -> Result<Self, CoreError> {
        let mut next = self.0.clone();
        for (name, value) in changes {
            if value.is_null() {
                next.remove(&name);
                if !is_known(&name) {
                    return Err(unknown(&name));
                }
            } else {
                next.insert(name, value);
            }
        }
        Self::new(next)
    }

    pub fn login(&self) -> &str {
        self.get("login").unwrap_or_default()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(Value::as_str)
    }

    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }
}

fn is_known(name: &str) -> bool {
    ATTRIBUTES.iter().any(|(known, _)| *known == name)
}

fn unknown(name: &str) -> CoreError {
    CoreError::validation(name, format!("Property name '{name}' is not defined in profile"))
}

/// `Ok(None)` drops a null optional attribute.
fn check_attribute(name: &str, value: &Value) -> Result<Option<String>, FieldError> {
    let Some((_, max_len)) = ATTRIBUTES.iter().find(|(known, _)| *known == name) else {
        return Err(FieldError::new(name, format!("Property name '{name}' is not defined in profile")));
    };
    let text = match value {
        Value::Null => return Ok(None),
        Value::String(text) => text.trim(),
        _ => return Err(FieldError::new(name, "The value must be a string")),
    };
    if text.is_empty() {
        return Ok(None);
    }
    if text.chars().count() > *max_len {
        return Err(FieldError::new(name, format!("The field is too long (at most {max_len} characters)")));
    }
    if text.chars().any(char::is_control) {
        return Err(FieldError::new(name, "The field contains control characters"));
    }
    match name {
        "login" if !looks_like_email(text) => {
            Err(FieldError::new(name, "Username must be in the form of an email address"))
        }
        // Look-alikes: `al\u{200b}ice@…` or a full-width `ａlice@…` beside `alice@…` would be a second
        // account that reads as the first. In NFKC, the lower-cased login the uniqueness check
        // compares is the case-insensitive NFKC form.
        "login" if text.chars().any(is_invisible) => {
            Err(FieldError::new(name, "Username must not contain invisible or formatting characters"))
        }
        "login" if !unicode_normalization::is_nfkc(text) => Err(FieldError::new(
            name,
            "Username must be in Unicode normalization form NFKC (no full-width or other compatibility characters)",
        )),
        "email" | "secondEmail" if !looks_like_email(text) => {
            Err(FieldError::new(name, "Does not match required pattern"))
        }
        _ => Ok(Some(text.to_owned())),
    }
}

/// Unicode's default-ignorable code points (rendered as nothing: zero-width spaces and joiners,
/// direction marks and overrides, variation selectors, fillers, tags) and the soft hyphen.
fn is_invisible(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x034F
            | 0x061C
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x206F
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFF8
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF
    )
}

/// One `@`, something before it, a dotted-or-not domain after it, no spaces.
fn looks_like_email(text: &str) -> bool {
    let mut parts = text.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !text.chars().any(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn base() -> Value {
        json!({"login": "a@example.com", "email": "a@example.com", "firstName": "A", "lastName": "B"})
    }

    #[test]
    fn accepts_the_default_schema() {
        let p = Profile::new(map(base())).unwrap();
        assert_eq!(p.login(), "a@example.com");
    }

    #[test]
    fn refuses_unknown_missing_and_wrong_types() {
        let mut v = base();
        v["favouriteColour"] = json!("blue");
        let Err(CoreError::Validation { field, causes }) = Profile::new(map(v)) else { panic!() };
        assert_eq!(field, "favouriteColour");
        assert_eq!(causes[0].message, "Property name 'favouriteColour' is not defined in profile");

        let Err(CoreError::Validation { field, .. }) =
            Profile::new(map(json!({"login": "a@example.com", "email": "a@example.com", "lastName": "B"})))
        else {
            panic!()
        };
        assert_eq!(field, "firstName");

        let mut v = base();
        v["firstName"] = json!(42);
        assert!(Profile::new(map(v)).is_err());

        let mut v = base();
        v["login"] = json!("not-an-email");
        assert!(Profile::new(map(v)).is_err());
    }

    #[test]
    fn logins_that_would_read_as_another_are_refused() {
        for look_alike in [
            "\u{ff41}lice@example.com",
            "al\u{200b}ice@example.com",
            "alice\u{2060}@example.com",
            "\u{202e}moc.elpmaxe@ecila",
            "al\u{00ad}ice@example.com",
            "alice@exam\u{fe0f}ple.com",
            "\u{2126}mega@example.com",
        ] {
            let mut v = base();
            v["login"] = json!(look_alike);
            let Err(CoreError::Validation { field, causes }) = Profile::new(map(v)) else {
                panic!("{look_alike:?} was accepted")
            };
            assert_eq!(field, "login", "{look_alike:?}");
            assert!(causes[0].message.starts_with("Username must"), "{look_alike:?}: {}", causes[0].message);
        }
        for fine in ["zoë@example.com", "josé@exämple.com", "名前@example.jp", "Alice@Example.com"] {
            let mut v = base();
            v["login"] = json!(fine);
            assert!(Profile::new(map(v)).is_ok(), "{fine}");
        }
    }

    #[test]
    fn merge_replaces_and_removes() {
        let p = Profile::new(map(base())).unwrap();
        let p = p.merged(map(json!({"title": "Chief", "firstName": "Ann"}))).unwrap();
        assert_eq!(p.get("title"), Some("Chief"));
        assert_eq!(p.get("firstName"), Some("Ann"));
        let p = p.merged(map(json!({"title": null}))).unwrap();
        assert_eq!(p.get("title"), None);
        assert!(p.merged(map(json!({"email": null}))).is_err(), "required attribute");
    }
}
