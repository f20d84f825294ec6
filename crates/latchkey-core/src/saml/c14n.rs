//! A small Exclusive XML Canonicalization (exc-c14n, without comments) over a roxmltree tree.
//!
//! Used only by the narrow enveloped-signature verifier (docs/architecture.md, "SAML input") on documents
//! that already passed the hardened parser: no DTD (so no default attributes or entity tricks), no comments
//! and no PIs (refused before c14n). What remains is elements, attributes, namespaces and text, which this
//! renders per <https://www.w3.org/TR/xml-exc-c14n/> §3 and XML-C14N §2.3: a namespace declaration is
//! output on an element that visibly uses its prefix (or lists it in the InclusiveNamespaces PrefixList)
//! unless the nearest output ancestor already rendered the same binding; attributes are sorted by
//! (namespace URI, local name); empty elements get an end tag. Prefixes are taken from the source text,
//! since the tree records only namespace URIs. Iterative, so deep input cannot overflow the stack.

use super::xml::{escape_attr, escape_text};
use roxmltree::{Node, NodeType};
use std::collections::BTreeMap;

enum Step<'a, 'x> {
    Open(Node<'a, 'x>),
    Close(Node<'a, 'x>),
}

const XML_PREFIX: &str = "xml";

/// Canonicalizes the subtree rooted at `apex`, leaving out `exclude` and its subtree (the
/// enveloped-signature transform, XMLDSig 6.6.4).
pub(crate) fn exclusive(apex: Node, exclude: Option<Node>, inclusive_prefixes: &[String]) -> String {
    let source = apex.document().input_text();
    let mut out = String::new();
    // Namespace bindings rendered by output ancestors, one map per open element; "" is the default.
    let mut rendered: Vec<BTreeMap<String, String>> = vec![BTreeMap::new()];
    // Explicit work stack (pre-order with close markers) instead of recursion.
    let mut work = vec![Step::Open(apex)];
    while let Some(step) = work.pop() {
        match step {
            Step::Open(node) if exclude == Some(node) => {}
            Step::Open(node) => match node.node_type() {
                NodeType::Element => {
                    let parent_rendered = rendered.last().cloned().unwrap_or_default();
                    rendered.push(open_element(&mut out, source, node, parent_rendered, inclusive_prefixes));
                    work.push(Step::Close(node));
                    let children: Vec<Node> = node.children().collect();
                    work.extend(children.into_iter().rev().map(Step::Open));
                }
                NodeType::Text => escape_text(&mut out, node.text().unwrap_or_default()),
                // Comments and PIs were refused by the parser step; the root is never inside.
                _ => {}
            },
            Step::Close(node) => {
                out.push_str("</");
                out.push_str(qname(source, node));
                out.push('>');
                rendered.pop();
            }
        }
    }
    out
}

/// The element's qualified name as written: the start tag's text after `<` up to space, `/` or `>`.
fn qname<'x>(source: &'x str, node: Node) -> &'x str {
    let tag = source.get(node.range().start + 1..).unwrap_or_default();
    let end = tag.find(|c: char| c.is_ascii_whitespace() || c == '/' || c == '>').unwrap_or(tag.len());
    &tag[..end]
}

fn prefix_of(qname: &str) -> &str {
    qname.split_once(':').map_or("", |(prefix, _)| prefix)
}

fn open_element(
    out: &mut String,
    source: &str,
    node: Node,
    mut rendered: BTreeMap<String, String>,
    inclusive_prefixes: &[String],
) -> BTreeMap<String, String> {
    let name = qname(source, node);
    // (prefix, uri) of each namespace this element visibly utilizes or includes.
    let mut needed: BTreeMap<&str, &str> = BTreeMap::new();
    needed.insert(prefix_of(name), node.tag_name().namespace().unwrap_or(""));
    let mut attributes = Vec::new();
    for attr in node.attributes() {
        let attr_qname = source.get(attr.range_qname()).unwrap_or_else(|| attr.name());
        let prefix = prefix_of(attr_qname);
        if !prefix.is_empty() {
            needed.insert(prefix, attr.namespace().unwrap_or(""));
        }
        attributes.push((attr.namespace().unwrap_or(""), attr.name(), attr_qname, attr.value()));
    }
    for prefix in inclusive_prefixes {
        let in_scope = node.namespaces().find(|ns| ns.name().unwrap_or("") == prefix.as_str());
        if let Some(ns) = in_scope {
            needed.insert(prefix.as_str(), ns.uri());
        }
    }
    out.push('<');
    out.push_str(name);
    for (prefix, uri) in needed {
        if prefix == XML_PREFIX {
            continue; // bound by definition, never declared (Namespaces in XML §3)
        }
        let already = rendered.get(prefix).map_or("", String::as_str);
        // An unprefixed element in no namespace needs `xmlns=""` only if a default was rendered above.
        if already == uri && (rendered.contains_key(prefix) || prefix.is_empty()) {
            continue;
        }
        if prefix.is_empty() {
            out.push_str(" xmlns=\"");
        } else {
            out.push_str(" xmlns:");
            out.push_str(prefix);
            out.push_str("=\"");
        }
        escape_attr(out, uri);
        out.push('"');
        rendered.insert(prefix.to_owned(), uri.to_owned());
    }
    attributes.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    for (_, _, attr_qname, value) in attributes {
        out.push(' ');
        out.push_str(attr_qname);
        out.push_str("=\"");
        escape_attr(out, value);
        out.push('"');
    }
    out.push('>');
    rendered
}
