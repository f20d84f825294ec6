//! A minimal XML writer whose output is already in exclusive canonical form.
//!
//! Latchkey signs only XML it wrote itself, so instead of canonicalizing it writes the canonical bytes
//! directly (docs/architecture.md, "SAML output"): UTF-8, no declaration, no comments/PIs/CDATA, no
//! whitespace between elements, empty elements as start+end tag, namespace declarations first (sorted by
//! prefix), then attributes sorted by local name, and the escaping of XML-C14N §2.3. Applying
//! enveloped-signature + exc-c14n to an element written here returns exactly the bytes written, which is what
//! makes signing without a canonicalizer correct.
//!
//! Invariant for callers: a namespace prefix is declared on the element that first *visibly uses* it
//! (exc-c14n §3), and only unprefixed attributes are written (their c14n order is by local name).
//! Every value passes [`check_xml_chars`] and an escape function, which also closes XML injection.

use super::SamlError;

/// Refuses characters XML 1.0 cannot carry (XML 1.0 §2.2 `Char`): C0 controls other than TAB, LF and
/// CR, and U+FFFE/U+FFFF. Lone surrogates cannot occur in a Rust `str`. Directory data is user-controlled,
/// so this is an error to report, never a panic.
pub fn check_xml_chars(field: &'static str, value: &str) -> Result<(), SamlError> {
    // Most values are ASCII without controls: one branch-free pass over the bytes says so.
    if value
        .bytes()
        .fold(true, |fine, b| fine & ((0x20..0x7f).contains(&b) | matches!(b, b'\t' | b'\n' | b'\r')))
    {
        return Ok(());
    }
    match value.chars().find(|&c| !is_xml_char(c)) {
        None => Ok(()),
        Some(c) => Err(SamlError::InvalidXmlChar { field, codepoint: u32::from(c) }),
    }
}

fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// Text-node escaping of XML-C14N §2.3: `&`, `<`, `>` and CR (which a parser would otherwise normalize).
pub fn escape_text(out: &mut String, value: &str) {
    escape_with(out, value, |b| match b {
        b'&' => Some("&amp;"),
        b'<' => Some("&lt;"),
        b'>' => Some("&gt;"),
        b'\r' => Some("&#xD;"),
        _ => None,
    });
}

/// Attribute-value escaping of XML-C14N §2.3: `&`, `<`, `"`, and TAB/LF/CR as character references
/// (which attribute-value normalization would otherwise turn into spaces). `>` stays literal.
pub fn escape_attr(out: &mut String, value: &str) {
    escape_with(out, value, |b| match b {
        b'&' => Some("&amp;"),
        b'<' => Some("&lt;"),
        b'"' => Some("&quot;"),
        b'\t' => Some("&#x9;"),
        b'\n' => Some("&#xA;"),
        b'\r' => Some("&#xD;"),
        _ => None,
    });
}

/// Copies `value` to `out`, replacing the ASCII bytes `replacement` names. Runs between them are
/// copied whole (a signed response is mostly base64 and plain text, escaped in bulk), and the clean
/// start of a value is found a block at a time with a test that has no early exit, which the
/// compiler vectorizes (the 9 KB base64 of a posted Response needs no escaping at all). Splitting at
/// an ASCII byte is always on a UTF-8 character boundary.
pub(crate) fn escape_with(out: &mut String, value: &str, replacement: impl Fn(u8) -> Option<&'static str>) {
    const BLOCK: usize = 64;
    let bytes = value.as_bytes();
    let mut clean = 0;
    for block in bytes.chunks(BLOCK) {
        if block.iter().fold(false, |dirty, &b| dirty | replacement(b).is_some()) {
            break;
        }
        clean += block.len();
    }
    if clean == bytes.len() {
        out.push_str(value);
        return;
    }
    // The block that needs escaping may start inside a multi-byte character.
    while !value.is_char_boundary(clean) {
        clean -= 1;
    }
    let mut copied = 0;
    for (at, &byte) in bytes.iter().enumerate().skip(clean) {
        if let Some(entity) = replacement(byte) {
            out.push_str(&value[copied..at]);
            out.push_str(entity);
            copied = at + 1;
        }
    }
    out.push_str(&value[copied..]);
}

/// `pairs` ordered by name: borrowed when they already are, else a sorted copy.
fn sorted<'p, 'v>(pairs: &'p [(&'static str, &'v str)]) -> std::borrow::Cow<'p, [(&'static str, &'v str)]> {
    if pairs.is_sorted_by(|a, b| a.0 <= b.0) {
        std::borrow::Cow::Borrowed(pairs)
    } else {
        let mut copy = pairs.to_vec();
        copy.sort_by(|a, b| a.0.cmp(b.0));
        std::borrow::Cow::Owned(copy)
    }
}

/// Builds canonical XML into a string. Element and attribute names are trusted constants (`&'static
/// str`); values are checked and escaped.
#[derive(Debug, Default)]
pub struct XmlWriter {
    out: String,
}

impl XmlWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes a start tag. `ns` are `(prefix, uri)` declarations; `attrs` are unprefixed `(name, value)`
    /// pairs. Both are sorted here, so callers may list them in schema order.
    pub fn start(
        &mut self,
        name: &'static str,
        ns: &[(&'static str, &str)],
        attrs: &[(&'static str, &str)],
    ) -> Result<(), SamlError> {
        // Sorted copies only when the caller's order is not canonical already (most elements have
        // at most one of each, and a signed response writes dozens).
        let ns = sorted(ns);
        let attrs = sorted(attrs);
        self.out.push('<');
        self.out.push_str(name);
        for &(prefix, uri) in ns.iter() {
            check_xml_chars(name, uri)?;
            self.out.push_str(" xmlns:");
            self.out.push_str(prefix);
            self.out.push_str("=\"");
            escape_attr(&mut self.out, uri);
            self.out.push('"');
        }
        for &(attr, value) in attrs.iter() {
            check_xml_chars(attr, value)?;
            self.out.push(' ');
            self.out.push_str(attr);
            self.out.push_str("=\"");
            escape_attr(&mut self.out, value);
            self.out.push('"');
        }
        self.out.push('>');
        Ok(())
    }

    /// Writes an end tag; every element, even an empty one, gets one (XML-C14N §2.3).
    pub fn end(&mut self, name: &'static str) {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
    }

    /// Writes escaped character data; `field` names the value in errors.
    pub fn text(&mut self, field: &'static str, value: &str) -> Result<(), SamlError> {
        check_xml_chars(field, value)?;
        escape_text(&mut self.out, value);
        Ok(())
    }

    /// An element with only text content (possibly empty).
    pub fn leaf(
        &mut self,
        name: &'static str,
        ns: &[(&'static str, &str)],
        attrs: &[(&'static str, &str)],
        text: &str,
    ) -> Result<(), SamlError> {
        self.start(name, ns, attrs)?;
        self.text(name, text)?;
        self.end(name);
        Ok(())
    }

    /// An element with no content.
    pub fn empty(
        &mut self,
        name: &'static str,
        ns: &[(&'static str, &str)],
        attrs: &[(&'static str, &str)],
    ) -> Result<(), SamlError> {
        self.start(name, ns, attrs)?;
        self.end(name);
        Ok(())
    }

    /// Appends a fragment this module already produced in canonical form (a signed element, a
    /// `ds:Signature`). Never pass untrusted text here.
    pub(crate) fn raw(&mut self, canonical: &str) {
        self.out.push_str(canonical);
    }

    pub fn as_str(&self) -> &str {
        &self.out
    }

    pub fn into_string(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_per_c14n() {
        let mut s = String::new();
        escape_text(&mut s, "a&b<c>d\"e'f\tg\nh\ri");
        assert_eq!(s, "a&amp;b&lt;c&gt;d\"e'f\tg\nh&#xD;i");
        let mut s = String::new();
        escape_attr(&mut s, "a&b<c>d\"e'f\tg\nh\ri");
        assert_eq!(s, "a&amp;b&lt;c>d&quot;e'f&#x9;g&#xA;h&#xD;i");
    }

    /// Values longer than the clean-prefix scan's block, with the first escape in a later block,
    /// one that starts inside a multi-byte character, and none at all: the same as a byte-by-byte
    /// escape.
    #[test]
    fn long_values_escape_like_a_byte_by_byte_loop() {
        fn one_by_one(value: &str) -> String {
            value
                .chars()
                .map(|c| match c {
                    '&' => "&amp;".to_owned(),
                    '<' => "&lt;".to_owned(),
                    '>' => "&gt;".to_owned(),
                    '\r' => "&#xD;".to_owned(),
                    other => other.to_string(),
                })
                .collect()
        }
        let cases = [
            "A".repeat(200),
            format!("{}<{}", "b".repeat(130), "c&".repeat(40)),
            format!("{}<tail>", "\u{4E2D}".repeat(30)),
            format!("{}&\r", "\u{1F600}".repeat(33)),
            format!("{}\u{E9}", "x".repeat(63)),
        ];
        for value in cases {
            let mut out = String::from(">");
            escape_text(&mut out, &value);
            assert_eq!(out, format!(">{}", one_by_one(&value)), "{value}");
        }
    }

    #[test]
    fn escapes_between_multibyte_characters_and_at_both_ends() {
        let mut s = String::from("prefix:");
        escape_text(&mut s, "<é&\u{1F600}>ü\r");
        assert_eq!(s, "prefix:&lt;é&amp;\u{1F600}&gt;ü&#xD;");
        let mut s = String::new();
        escape_attr(&mut s, "\u{4E2D}\u{6587}");
        assert_eq!(s, "\u{4E2D}\u{6587}");
        let mut s = String::new();
        escape_attr(&mut s, "");
        assert_eq!(s, "");
    }

    #[test]
    fn refuses_non_xml_chars() {
        assert!(check_xml_chars("x", "tab\tnl\ncr\r ok \u{10348} \u{FFFD}").is_ok());
        assert_eq!(
            check_xml_chars("name", "a\u{0}b"),
            Err(SamlError::InvalidXmlChar { field: "name", codepoint: 0 })
        );
        assert!(check_xml_chars("x", "\u{1b}").is_err());
        assert!(check_xml_chars("x", "\u{FFFE}").is_err());
        assert!(check_xml_chars("x", "\u{FFFF}").is_err());
    }

    #[test]
    fn sorts_namespaces_then_attributes_and_never_self_closes() {
        let mut w = XmlWriter::new();
        w.start(
            "p:E",
            &[("z", "urn:z"), ("p", "urn:p")],
            &[("Version", "2.0"), ("ID", "_1"), ("Destination", "d")],
        )
        .unwrap();
        w.empty("p:F", &[], &[]).unwrap();
        w.end("p:E");
        assert_eq!(
            w.into_string(),
            r#"<p:E xmlns:p="urn:p" xmlns:z="urn:z" Destination="d" ID="_1" Version="2.0"><p:F></p:F></p:E>"#
        );
    }

    #[test]
    fn errors_name_the_field() {
        let mut w = XmlWriter::new();
        let err = w.leaf("saml:NameID", &[], &[], "x\u{7}").unwrap_err();
        assert_eq!(err.to_string(), "saml:NameID: character U+0007 is not allowed in XML 1.0");
        assert!(w.start("a", &[], &[("Name", "\u{0}")]).is_err());
    }
}
