//! The hosted pages' templates and style sheet: minijinja templates embedded in the binary, each
//! replaceable for branding by a file of the same name in `<pages_dir>/templates/` (and the style
//! sheet by `<pages_dir>/static/latchkey.css`), read once at start.
//!
//! Autoescaping is on for every template (they all end in `.html`, minijinja's rule), so values
//! from users and requests are always escaped; no template marks a value `safe`.

use std::path::Path;

use minijinja::Environment;

use super::i18n::Catalog;

/// Every template, by the name templates use to extend and import each other.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("macros.html", include_str!("templates/macros.html")),
    ("signin.html", include_str!("templates/signin.html")),
    ("message.html", include_str!("templates/message.html")),
    ("mfa_verify.html", include_str!("templates/mfa_verify.html")),
    ("mfa_enroll.html", include_str!("templates/mfa_enroll.html")),
    ("mfa_activate.html", include_str!("templates/mfa_activate.html")),
    ("password.html", include_str!("templates/password.html")),
    ("dashboard.html", include_str!("templates/dashboard.html")),
    ("sessions.html", include_str!("templates/sessions.html")),
    ("demo_kiosk.html", include_str!("templates/demo_kiosk.html")),
    ("demo_sp.html", include_str!("templates/demo_sp.html")),
    ("demo_rp.html", include_str!("templates/demo_rp.html")),
];

const STYLE: &str = include_str!("static/latchkey.css");

/// Templates, the style sheet and the strings, ready to render.
pub struct Pages {
    env: Environment<'static>,
    pub(crate) style: String,
    pub(crate) messages: Catalog,
}

impl Pages {
    /// The embedded pages, each replaced by its file in `dir` when there is one. Fails on a file
    /// that cannot be read or a template that does not compile (checked at start, not per request).
    pub fn load(dir: Option<&Path>) -> Result<Self, String> {
        let mut env = Environment::new();
        for (name, embedded) in TEMPLATES {
            let file = dir.map(|d| d.join("templates").join(name)).filter(|p| p.is_file());
            let source = match &file {
                Some(path) => {
                    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?
                }
                None => (*embedded).to_owned(),
            };
            env.add_template_owned(*name, source).map_err(|e| format!("template {name}: {e}"))?;
        }
        let style = match dir.map(|d| d.join("static").join("latchkey.css")).filter(|p| p.is_file()) {
            Some(path) => std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?,
            None => STYLE.to_owned(),
        };
        Ok(Self { env, style, messages: Catalog::load(dir)? })
    }

    /// The embedded pages only (what [`Self::load`] gives without a directory). Never fails in a
    /// tested build; should it, pages render as errors rather than the process failing.
    pub fn embedded() -> Self {
        Self::load(None).unwrap_or_else(|problem| {
            tracing::error!(problem, "the embedded page templates do not load");
            Self {
                env: Environment::new(),
                style: STYLE.to_owned(),
                messages: Catalog::load(None).unwrap_or_else(|_| Catalog::empty()),
            }
        })
    }

    pub(crate) fn render(&self, name: &str, context: minijinja::Value) -> Result<String, minijinja::Error> {
        self.env.get_template(name)?.render(context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_templates_compile_and_escape() {
        let pages = Pages::load(None).unwrap();
        let (lang, _, t) = pages.messages.pick(None);
        let html = pages
            .render(
                "signin.html",
                minijinja::context! { lang, t => t.clone(), csrf => "tok", username => "<script>x</script>" },
            )
            .unwrap();
        assert!(html.contains("&lt;script&gt;x&lt;&#x2f;script&gt;"), "{html}");
        assert!(!html.contains("<script>"));
    }

    #[test]
    fn a_directory_overrides_templates_and_style() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("templates")).unwrap();
        std::fs::create_dir_all(dir.path().join("static")).unwrap();
        std::fs::write(
            dir.path().join("templates/base.html"),
            "<html lang=\"{{ lang }}\">ACME {% block content %}{% endblock %}</html>",
        )
        .unwrap();
        std::fs::write(dir.path().join("static/latchkey.css"), "body{color:red}").unwrap();
        let pages = Pages::load(Some(dir.path())).unwrap();
        let (lang, _, t) = pages.messages.pick(None);
        let html =
            pages.render("signin.html", minijinja::context! { lang, t => t.clone(), csrf => "x" }).unwrap();
        assert!(html.starts_with("<html lang=\"en\">ACME"), "{html}");
        assert_eq!(pages.style, "body{color:red}");
        std::fs::write(dir.path().join("templates/signin.html"), "{% if %}").unwrap();
        assert!(Pages::load(Some(dir.path())).err().unwrap().contains("signin.html"));
    }
}
