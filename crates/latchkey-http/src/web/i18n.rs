//! Localised strings of the hosted pages: a table of message ids to text per language, English
//! embedded in the binary (`messages/en.txt`), more languages or replacements from
//! `<pages_dir>/messages/<lang>.txt`. Templates show only strings from this table (never
//! hard-coded English); a language is picked per request from `Accept-Language` among those
//! available, and a language file that lacks an id falls back to English for it.

use std::collections::BTreeMap;
use std::path::Path;

/// Message id → text, for one language.
pub(crate) type Messages = BTreeMap<String, String>;

const ENGLISH: &str = include_str!("messages/en.txt");
const DEFAULT_LANGUAGE: &str = "en";

/// Every available language, each complete (missing ids filled from English).
pub(crate) struct Catalog {
    /// `(language tag in lower case, its messages, the same as a template value)`; English first.
    languages: Vec<(String, Messages, minijinja::Value)>,
}

/// Parses `key = value` lines; blank lines and `#` comments are skipped.
fn parse(text: &str, source: &str) -> Result<Messages, String> {
    let mut messages = Messages::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("{source}:{}: expected `id = text`", number + 1));
        };
        messages.insert(key.trim().to_owned(), value.trim().to_owned());
    }
    Ok(messages)
}

impl Catalog {
    /// No language at all (only if the embedded English could not be parsed; tests prevent that).
    pub(crate) fn empty() -> Self {
        Self { languages: Vec::new() }
    }

    /// English plus every `messages/<lang>.txt` of `dir`.
    pub(crate) fn load(dir: Option<&Path>) -> Result<Self, String> {
        let english = parse(ENGLISH, "messages/en.txt")?;
        let mut tables: BTreeMap<String, Messages> = BTreeMap::new();
        tables.insert(DEFAULT_LANGUAGE.to_owned(), english.clone());
        if let Some(dir) = dir.map(|d| d.join("messages")).filter(|d| d.is_dir()) {
            let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            for entry in entries {
                let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
                let Some(lang) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".txt"))
                    .map(str::to_ascii_lowercase)
                else {
                    continue;
                };
                if lang.is_empty() || !lang.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    return Err(format!("{}: not a language tag", path.display()));
                }
                let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                let table = tables.entry(lang).or_insert_with(|| english.clone());
                table.extend(parse(&text, &path.display().to_string())?);
            }
        }
        let mut languages: Vec<(String, Messages, minijinja::Value)> = tables
            .into_iter()
            .map(|(lang, messages)| {
                let value = minijinja::Value::from(minijinja::value::Serde(&messages));
                (lang, messages, value)
            })
            .collect();
        languages.sort_by_key(|(lang, _, _)| lang != DEFAULT_LANGUAGE);
        Ok(Self { languages })
    }

    /// The best available language for an `Accept-Language` header (RFC 9110 §12.5.4: by
    /// quality, then order; `fr-CA` also matches `fr`), English when none matches.
    pub(crate) fn pick(&self, accept_language: Option<&str>) -> (&str, &Messages, &minijinja::Value) {
        let mut wanted: Vec<(u16, usize, String)> = accept_language
            .unwrap_or_default()
            .split(',')
            .take(20)
            .enumerate()
            .filter_map(|(index, item)| {
                let mut parts = item.split(';');
                let tag = parts.next()?.trim().to_ascii_lowercase();
                let quality = parts
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .unwrap_or(1.0);
                let quality = (quality.clamp(0.0, 1.0) * 1000.0) as u16;
                (quality > 0 && !tag.is_empty()).then_some((quality, index, tag))
            })
            .collect();
        wanted.sort_by_key(|(quality, index, _)| (std::cmp::Reverse(*quality), *index));
        let find = |tag: &str| self.languages.iter().find(|(lang, _, _)| lang == tag);
        let chosen = wanted
            .iter()
            .find_map(|(_, _, tag)| find(tag).or_else(|| tag.split('-').next().and_then(find)))
            .or_else(|| self.languages.first());
        match chosen {
            Some((lang, messages, value)) => (lang, messages, value),
            None => (DEFAULT_LANGUAGE, &EMPTY, &EMPTY_VALUE),
        }
    }
}

static EMPTY: Messages = Messages::new();
static EMPTY_VALUE: minijinja::Value = minijinja::Value::UNDEFINED;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_parses_and_is_the_default() {
        let catalog = Catalog::load(None).unwrap();
        let (lang, messages, _) = catalog.pick(None);
        assert_eq!(lang, "en");
        assert_eq!(messages["signin.submit"], "Sign in");
        assert_eq!(catalog.pick(Some("de-DE,de;q=0.9")).0, "en");
    }

    #[test]
    fn languages_from_the_directory_are_picked_by_quality_and_fall_back_to_english() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("messages")).unwrap();
        std::fs::write(dir.path().join("messages/fr.txt"), "signin.submit = Se connecter\n").unwrap();
        let catalog = Catalog::load(Some(dir.path())).unwrap();
        let (lang, messages, _) = catalog.pick(Some("de;q=0.9, fr-CA;q=0.8, en;q=0.5"));
        assert_eq!(lang, "fr");
        assert_eq!(messages["signin.submit"], "Se connecter");
        assert_eq!(messages["signin.password"], "Password", "missing ids come from English");
        assert_eq!(catalog.pick(Some("en, fr")).0, "en");
        assert_eq!(catalog.pick(Some("fr;q=0")).0, "en");
    }

    #[test]
    fn malformed_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("messages")).unwrap();
        std::fs::write(dir.path().join("messages/fr.txt"), "no equals sign\n").unwrap();
        assert!(Catalog::load(Some(dir.path())).is_err());
    }
}
