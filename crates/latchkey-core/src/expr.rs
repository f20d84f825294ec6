//! Latchkey's one expression language: the part of Okta Expression Language that SAML attribute
//! values and NameID templates, group rules and (next) OIDC claims are written in.
//!
//! An expression is parsed when the object holding it is saved, and refused then, with the
//! position and the reason, if Latchkey cannot evaluate it; a parsed expression never fails at
//! sign-in time. Supported:
//! - `user.<attribute>` (any profile attribute, `userName`/`login`, `id`), also spelled
//!   `source.<attribute>` as Okta's built-in templates do; a missing attribute is `null`;
//! - string literals in double or single quotes, `true`, `false`, `null`;
//! - `+` (string concatenation), `==` and `!=`, `&&`/`AND`, `||`/`OR`, `!`, `cond ? a : b`,
//!   parentheses;
//! - `String.stringContains(s, part)`, `String.startsWith(s, prefix)`, `String.endsWith(s, suffix)`,
//!   `String.toUpperCase(s)`, `String.toLowerCase(s)`, `String.substringBefore(s, sep)`,
//!   `String.substringAfter(s, sep)`, `String.len(s)`, `String.join(sep, s…)`;
//! - `isMemberOfGroup("00g…")` and `isMemberOfAnyGroup("00g…", …)` over the user's groups.
//!
//! Types are checked when parsing: a group rule's expression must be a condition (true or false),
//! an attribute value or template must be text. Sizes are bounded (length, nesting, number of
//! nodes), so a hostile expression costs little to refuse. Evaluation is linear in its size.

use std::fmt;

use serde_json::Value as Json;

use crate::users::User;

/// Longest expression accepted (they are short by nature; the cap bounds parsing work).
pub const MAX_EXPRESSION: usize = 1024;
/// Deepest nesting of parentheses, calls and operators.
const MAX_DEPTH: usize = 32;
/// Most nodes one expression may have.
const MAX_NODES: usize = 256;

/// Why an expression was refused: where (1-based character position) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    pub position: usize,
    pub message: String,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at position {}: {}", self.position, self.message)
    }
}

/// What an expression yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Condition,
}

/// A parsed, type-checked expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expression {
    root: Node,
    kind: Kind,
    uses_groups: bool,
}

/// What an expression may read: the user and, for the group functions, the ids of their groups.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub user: &'a User,
    /// `None` when the caller did not load them: the expression did not ask ([`Expression::uses_groups`]).
    pub group_ids: Option<&'a [String]>,
}

impl<'a> Subject<'a> {
    pub fn user(user: &'a User) -> Self {
        Subject { user, group_ids: None }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Literal(Option<String>),
    Bool(bool),
    Attribute(String),
    /// `a + b + …`: null when every attribute operand is null (Okta leaves such a value out).
    Concat(Vec<Node>),
    Equals(Box<Node>, Box<Node>, bool),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
    Choose(Box<Node>, Box<Node>, Box<Node>),
    Call(Function, Vec<Node>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Function {
    Contains,
    StartsWith,
    EndsWith,
    ToUpper,
    ToLower,
    SubstringBefore,
    SubstringAfter,
    Len,
    Join,
    MemberOfGroup,
    MemberOfAnyGroup,
}

impl Function {
    fn by_name(name: &str) -> Option<Self> {
        Some(match name {
            "String.stringContains" => Function::Contains,
            "String.startsWith" => Function::StartsWith,
            "String.endsWith" => Function::EndsWith,
            "String.toUpperCase" => Function::ToUpper,
            "String.toLowerCase" => Function::ToLower,
            "String.substringBefore" => Function::SubstringBefore,
            "String.substringAfter" => Function::SubstringAfter,
            "String.len" => Function::Len,
            "String.join" => Function::Join,
            "isMemberOfGroup" => Function::MemberOfGroup,
            "isMemberOfAnyGroup" => Function::MemberOfAnyGroup,
            _ => return None,
        })
    }

    /// Argument counts accepted (`None`: at least the minimum).
    fn arity(self) -> (usize, Option<usize>) {
        match self {
            Function::ToUpper | Function::ToLower | Function::Len | Function::MemberOfGroup => (1, Some(1)),
            Function::Contains
            | Function::StartsWith
            | Function::EndsWith
            | Function::SubstringBefore
            | Function::SubstringAfter => (2, Some(2)),
            Function::Join => (2, None),
            Function::MemberOfAnyGroup => (1, None),
        }
    }

    fn result(self) -> Kind {
        match self {
            Function::Contains
            | Function::StartsWith
            | Function::EndsWith
            | Function::MemberOfGroup
            | Function::MemberOfAnyGroup => Kind::Condition,
            _ => Kind::Text,
        }
    }
}

impl Expression {
    /// Parses a text expression (an attribute value).
    pub fn parse(text: &str) -> Result<Self, ExprError> {
        Self::parse_as(text, Kind::Text)
    }

    /// Parses a condition (a group rule's expression).
    pub fn parse_condition(text: &str) -> Result<Self, ExprError> {
        Self::parse_as(text, Kind::Condition)
    }

    /// Parses a template of the form `${expression}` (a NameID template).
    pub fn parse_template(text: &str) -> Result<Self, ExprError> {
        let trimmed = text.trim();
        let inner = trimmed.strip_prefix("${").and_then(|t| t.strip_suffix('}')).ok_or_else(|| {
            ExprError { position: 1, message: "must have the form ${user.attribute}".to_owned() }
        })?;
        Self::parse_as(inner, Kind::Text).map_err(|e| ExprError { position: e.position + 2, ..e })
    }

    fn parse_as(text: &str, kind: Kind) -> Result<Self, ExprError> {
        if text.chars().count() > MAX_EXPRESSION {
            return Err(ExprError {
                position: MAX_EXPRESSION + 1,
                message: format!("expressions are limited to {MAX_EXPRESSION} characters"),
            });
        }
        let tokens = tokenize(text)?;
        let mut parser = Parser { tokens, at: 0, depth: 0, nodes: 0, end: text.chars().count() + 1 };
        let (root, found) = parser.expression()?;
        if let Some(token) = parser.tokens.get(parser.at) {
            return Err(parser.error_at(token.position, "unexpected text after the expression"));
        }
        if found != kind {
            let wanted = match kind {
                Kind::Text => "text (an attribute, a quoted string, or text joined with +)",
                Kind::Condition => "a condition (true or false), such as user.department == \"Sales\"",
            };
            return Err(ExprError { position: 1, message: format!("the expression must be {wanted}") });
        }
        let uses_groups = uses_groups(&root);
        Ok(Expression { root, kind, uses_groups })
    }

    /// Whether evaluating needs the user's group ids.
    pub fn uses_groups(&self) -> bool {
        self.uses_groups
    }

    /// The text for `subject`; `None` when it yields nothing (every attribute it names is absent).
    pub fn evaluate(&self, subject: &Subject<'_>) -> Option<String> {
        match eval(&self.root, subject) {
            Val::Text(text) => Some(text),
            Val::Bool(b) => Some(b.to_string()),
            Val::Null => None,
        }
    }

    /// Whether the condition holds for `subject` (`false` for a text expression).
    pub fn holds(&self, subject: &Subject<'_>) -> bool {
        self.kind == Kind::Condition && matches!(eval(&self.root, subject), Val::Bool(true))
    }
}

// ------------------------------------------------------------------------------------------------
// Tokens

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Str(String),
    Ident(String),
    Symbol(&'static str),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    /// 1-based character position.
    position: usize,
}

const SYMBOLS: [&str; 11] = ["==", "!=", "&&", "||", "+", "!", "(", ")", ",", "?", ":"];

fn tokenize(text: &str) -> Result<Vec<Token>, ExprError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let position = i + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '\'' {
            let start = i + 1;
            let end = chars[start..]
                .iter()
                .position(|&d| d == c)
                .map(|n| start + n)
                .ok_or(ExprError { position, message: "unterminated string literal".to_owned() })?;
            tokens.push(Token { tok: Tok::Str(chars[start..end].iter().collect()), position });
            i = end + 1;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while chars.get(i).is_some_and(|d| d.is_ascii_alphanumeric() || *d == '_' || *d == '.') {
                i += 1;
            }
            tokens.push(Token { tok: Tok::Ident(chars[start..i].iter().collect()), position });
        } else if let Some(symbol) = SYMBOLS.iter().find(|s| {
            let len = s.chars().count();
            chars.get(i..i + len).is_some_and(|window| window.iter().copied().eq(s.chars()))
        }) {
            tokens.push(Token { tok: Tok::Symbol(symbol), position });
            i += symbol.len();
        } else {
            return Err(ExprError { position, message: format!("unexpected character {c:?}") });
        }
    }
    Ok(tokens)
}

// ------------------------------------------------------------------------------------------------
// Parsing: a precedence climb, lowest first: ?:, ||, &&, == !=, + , !, primary.

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
    nodes: usize,
    /// The position just after the text, for errors at its end.
    end: usize,
}

type Parsed = Result<(Node, Kind), ExprError>;

impl Parser {
    fn error_at(&self, position: usize, message: &str) -> ExprError {
        ExprError { position, message: message.to_owned() }
    }

    fn here(&self) -> usize {
        self.tokens.get(self.at).map_or(self.end, |t| t.position)
    }

    fn peek_symbol(&self, symbol: &str) -> bool {
        matches!(self.tokens.get(self.at), Some(Token { tok: Tok::Symbol(s), .. }) if *s == symbol)
    }

    fn peek_word(&self, word: &str) -> bool {
        matches!(self.tokens.get(self.at), Some(Token { tok: Tok::Ident(w), .. }) if w == word)
    }

    fn expect(&mut self, symbol: &str) -> Result<(), ExprError> {
        if self.peek_symbol(symbol) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.error_at(self.here(), &format!("expected {symbol}")))
        }
    }

    fn node(&mut self, node: Node) -> Result<Node, ExprError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(self.error_at(self.here(), "the expression is too complex"));
        }
        Ok(node)
    }

    fn nested<T>(&mut self, parse: impl FnOnce(&mut Self) -> Result<T, ExprError>) -> Result<T, ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error_at(self.here(), "the expression is nested too deeply"));
        }
        let parsed = parse(self);
        self.depth -= 1;
        parsed
    }

    fn expression(&mut self) -> Parsed {
        self.nested(|p| {
            let at = p.here();
            let (condition, kind) = p.or()?;
            if !p.peek_symbol("?") {
                return Ok((condition, kind));
            }
            p.at += 1;
            require(kind, Kind::Condition, at, "the part before ? must be a condition")?;
            let then_at = p.here();
            let (then, then_kind) = p.expression()?;
            p.expect(":")?;
            let (otherwise, otherwise_kind) = p.expression()?;
            require(otherwise_kind, then_kind, then_at, "both branches of ?: must be of the same kind")?;
            let node = p.node(Node::Choose(Box::new(condition), Box::new(then), Box::new(otherwise)))?;
            Ok((node, then_kind))
        })
    }

    fn or(&mut self) -> Parsed {
        let at = self.here();
        let (mut left, mut kind) = self.and()?;
        while self.peek_symbol("||") || self.peek_word("OR") {
            self.at += 1;
            require(kind, Kind::Condition, at, "|| joins conditions")?;
            let right_at = self.here();
            let (right, right_kind) = self.and()?;
            require(right_kind, Kind::Condition, right_at, "|| joins conditions")?;
            left = self.node(Node::Or(Box::new(left), Box::new(right)))?;
            kind = Kind::Condition;
        }
        Ok((left, kind))
    }

    fn and(&mut self) -> Parsed {
        let at = self.here();
        let (mut left, mut kind) = self.equality()?;
        while self.peek_symbol("&&") || self.peek_word("AND") {
            self.at += 1;
            require(kind, Kind::Condition, at, "&& joins conditions")?;
            let right_at = self.here();
            let (right, right_kind) = self.equality()?;
            require(right_kind, Kind::Condition, right_at, "&& joins conditions")?;
            left = self.node(Node::And(Box::new(left), Box::new(right)))?;
            kind = Kind::Condition;
        }
        Ok((left, kind))
    }

    fn equality(&mut self) -> Parsed {
        let (left, kind) = self.concat()?;
        let equal = if self.peek_symbol("==") {
            true
        } else if self.peek_symbol("!=") {
            false
        } else {
            return Ok((left, kind));
        };
        self.at += 1;
        let right_at = self.here();
        let (right, right_kind) = self.concat()?;
        require(right_kind, kind, right_at, "== and != compare values of the same kind")?;
        Ok((self.node(Node::Equals(Box::new(left), Box::new(right), equal))?, Kind::Condition))
    }

    fn concat(&mut self) -> Parsed {
        let at = self.here();
        let (first, kind) = self.unary()?;
        if !self.peek_symbol("+") {
            return Ok((first, kind));
        }
        require(kind, Kind::Text, at, "+ joins text")?;
        let mut parts = vec![first];
        while self.peek_symbol("+") {
            self.at += 1;
            let part_at = self.here();
            let (part, part_kind) = self.unary()?;
            require(part_kind, Kind::Text, part_at, "+ joins text")?;
            parts.push(part);
        }
        Ok((self.node(Node::Concat(parts))?, Kind::Text))
    }

    fn unary(&mut self) -> Parsed {
        if self.peek_symbol("!") {
            self.at += 1;
            return self.nested(|p| {
                let at = p.here();
                let (operand, kind) = p.unary()?;
                require(kind, Kind::Condition, at, "! negates a condition")?;
                Ok((p.node(Node::Not(Box::new(operand)))?, Kind::Condition))
            });
        }
        self.primary()
    }

    fn primary(&mut self) -> Parsed {
        let Some(token) = self.tokens.get(self.at).cloned() else {
            return Err(self.error_at(self.end, "the expression ends too early"));
        };
        self.at += 1;
        match token.tok {
            Tok::Str(text) => Ok((self.node(Node::Literal(Some(text)))?, Kind::Text)),
            Tok::Symbol("(") => {
                let inner = self.expression()?;
                self.expect(")")?;
                Ok(inner)
            }
            Tok::Symbol(symbol) => Err(self.error_at(token.position, &format!("unexpected {symbol}"))),
            Tok::Ident(word) => self.word(&word, token.position),
        }
    }

    fn word(&mut self, word: &str, position: usize) -> Parsed {
        match word {
            "true" => return Ok((self.node(Node::Bool(true))?, Kind::Condition)),
            "false" => return Ok((self.node(Node::Bool(false))?, Kind::Condition)),
            "null" => return Ok((self.node(Node::Literal(None))?, Kind::Text)),
            _ => {}
        }
        if self.peek_symbol("(") {
            let function = Function::by_name(word).ok_or_else(|| {
                self.error_at(position, &format!("{word} is not a function Latchkey supports"))
            })?;
            self.at += 1;
            let mut args = Vec::new();
            if !self.peek_symbol(")") {
                loop {
                    let arg_at = self.here();
                    let (arg, kind) = self.expression()?;
                    require(kind, Kind::Text, arg_at, &format!("{word} takes text arguments"))?;
                    args.push(arg);
                    if !self.peek_symbol(",") {
                        break;
                    }
                    self.at += 1;
                }
            }
            self.expect(")")?;
            let (min, max) = function.arity();
            if args.len() < min || max.is_some_and(|max| args.len() > max) {
                let wanted = match max {
                    Some(max) if max == min => format!("{min}"),
                    Some(max) => format!("{min} to {max}"),
                    None => format!("at least {min}"),
                };
                return Err(self.error_at(position, &format!("{word} takes {wanted} argument(s)")));
            }
            if matches!(function, Function::MemberOfGroup | Function::MemberOfAnyGroup)
                && !args.iter().all(|a| matches!(a, Node::Literal(Some(_))))
            {
                return Err(self.error_at(position, &format!("{word} takes quoted group ids")));
            }
            return Ok((self.node(Node::Call(function, args))?, function.result()));
        }
        let name = word
            .strip_prefix("user.")
            .or_else(|| word.strip_prefix("source."))
            .filter(|n| !n.is_empty() && !n.contains('.'))
            .ok_or_else(|| {
                self.error_at(
                    position,
                    &format!("unknown name {word}: use user.<attribute>, a quoted string or a function"),
                )
            })?;
        Ok((self.node(Node::Attribute(name.to_owned()))?, Kind::Text))
    }
}

fn require(found: Kind, wanted: Kind, position: usize, message: &str) -> Result<(), ExprError> {
    if found == wanted { Ok(()) } else { Err(ExprError { position, message: message.to_owned() }) }
}

fn uses_groups(node: &Node) -> bool {
    match node {
        Node::Call(Function::MemberOfGroup | Function::MemberOfAnyGroup, _) => true,
        Node::Call(_, args) | Node::Concat(args) => args.iter().any(uses_groups),
        Node::Equals(a, b, _) | Node::And(a, b) | Node::Or(a, b) => uses_groups(a) || uses_groups(b),
        Node::Not(a) => uses_groups(a),
        Node::Choose(a, b, c) => uses_groups(a) || uses_groups(b) || uses_groups(c),
        Node::Literal(_) | Node::Bool(_) | Node::Attribute(_) => false,
    }
}

// ------------------------------------------------------------------------------------------------
// Evaluation

#[derive(Debug, Clone, PartialEq, Eq)]
enum Val {
    Null,
    Text(String),
    Bool(bool),
}

impl Val {
    fn text(self) -> Option<String> {
        match self {
            Val::Text(text) => Some(text),
            Val::Bool(b) => Some(b.to_string()),
            Val::Null => None,
        }
    }
}

fn eval(node: &Node, subject: &Subject<'_>) -> Val {
    match node {
        Node::Literal(Some(text)) => Val::Text(text.clone()),
        Node::Literal(None) => Val::Null,
        Node::Bool(b) => Val::Bool(*b),
        Node::Attribute(name) => attribute(subject.user, name).map_or(Val::Null, Val::Text),
        Node::Concat(parts) => {
            let mut out = String::new();
            let mut names_attribute = false;
            let mut any_present = false;
            for part in parts {
                let literal = matches!(part, Node::Literal(_));
                names_attribute |= !literal;
                if let Some(text) = eval(part, subject).text() {
                    any_present |= !literal;
                    out.push_str(&text);
                }
            }
            if names_attribute && !any_present { Val::Null } else { Val::Text(out) }
        }
        Node::Equals(a, b, equal) => Val::Bool((eval(a, subject) == eval(b, subject)) == *equal),
        Node::And(a, b) => Val::Bool(truthy(eval(a, subject)) && truthy(eval(b, subject))),
        Node::Or(a, b) => Val::Bool(truthy(eval(a, subject)) || truthy(eval(b, subject))),
        Node::Not(a) => Val::Bool(!truthy(eval(a, subject))),
        Node::Choose(condition, then, otherwise) => {
            if truthy(eval(condition, subject)) {
                eval(then, subject)
            } else {
                eval(otherwise, subject)
            }
        }
        Node::Call(function, args) => call(*function, args, subject),
    }
}

fn truthy(value: Val) -> bool {
    value == Val::Bool(true)
}

fn call(function: Function, args: &[Node], subject: &Subject<'_>) -> Val {
    let text = |i: usize| args.get(i).and_then(|a| eval(a, subject).text());
    let both = || Some((text(0)?, text(1)?));
    match function {
        Function::Contains => Val::Bool(both().is_some_and(|(s, part)| s.contains(&part))),
        Function::StartsWith => Val::Bool(both().is_some_and(|(s, prefix)| s.starts_with(&prefix))),
        Function::EndsWith => Val::Bool(both().is_some_and(|(s, suffix)| s.ends_with(&suffix))),
        Function::ToUpper => text(0).map_or(Val::Null, |s| Val::Text(s.to_uppercase())),
        Function::ToLower => text(0).map_or(Val::Null, |s| Val::Text(s.to_lowercase())),
        Function::SubstringBefore => both().map_or(Val::Null, |(s, sep)| {
            Val::Text(s.split_once(sep.as_str()).map_or(String::new(), |(before, _)| before.to_owned()))
        }),
        Function::SubstringAfter => both().map_or(Val::Null, |(s, sep)| {
            Val::Text(s.split_once(sep.as_str()).map_or(String::new(), |(_, after)| after.to_owned()))
        }),
        Function::Len => text(0).map_or(Val::Null, |s| Val::Text(s.chars().count().to_string())),
        Function::Join => {
            let separator = text(0).unwrap_or_default();
            let parts: Vec<String> = (1..args.len()).filter_map(text).collect();
            Val::Text(parts.join(&separator))
        }
        Function::MemberOfGroup | Function::MemberOfAnyGroup => {
            let groups = subject.group_ids.unwrap_or_default();
            Val::Bool(args.iter().any(|arg| match arg {
                Node::Literal(Some(id)) => groups.iter().any(|g| g == id),
                _ => false,
            }))
        }
    }
}

/// A profile attribute as text (arrays joined by commas); `None` when absent or null.
fn attribute(user: &User, name: &str) -> Option<String> {
    match name {
        "userName" | "login" => return Some(user.login().to_owned()),
        "id" => return Some(user.id.clone()),
        _ => {}
    }
    match user.profile.as_map().get(name)? {
        Json::Null => None,
        Json::String(s) => Some(s.clone()),
        Json::Bool(b) => Some(b.to_string()),
        Json::Number(n) => Some(n.to_string()),
        Json::Array(items) => Some(items.iter().filter_map(Json::as_str).collect::<Vec<_>>().join(",")),
        Json::Object(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::users::UserStatus;
    use crate::users::profile::Profile;
    use serde_json::json;

    fn alice() -> User {
        let Json::Object(profile) = json!({
            "login": "alice@example.com", "email": "alice@example.com", "firstName": "Alice",
            "lastName": "Smith", "department": "Engineering", "nickName": null, "level": 3
        }) else {
            unreachable!()
        };
        User {
            id: "00ualice".into(),
            status: UserStatus::Active,
            created: Timestamp(0),
            activated: None,
            status_changed: None,
            last_login: None,
            last_updated: Timestamp(0),
            password_changed: None,
            profile: Profile::from_stored(profile),
            password_hash: None,
            password_history: Vec::new(),
            failed_attempts: 0,
            locked_at: None,
            version: 1,
        }
    }

    fn text(expression: &str) -> Option<String> {
        let user = alice();
        Expression::parse(expression).unwrap().evaluate(&Subject::user(&user))
    }

    fn holds(expression: &str, groups: &[&str]) -> bool {
        let user = alice();
        let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
        let parsed = Expression::parse_condition(expression).unwrap();
        parsed.holds(&Subject { user: &user, group_ids: Some(&groups) })
    }

    #[test]
    fn text_expressions_join_attributes_and_leave_out_missing_ones() {
        assert_eq!(text("user.email").as_deref(), Some("alice@example.com"));
        assert_eq!(text("user.firstName + \" \" + user.lastName").as_deref(), Some("Alice Smith"));
        assert_eq!(text("source.login").as_deref(), Some("alice@example.com"));
        assert_eq!(text("user.level").as_deref(), Some("3"));
        // Every attribute named is absent: nothing, not the literal parts alone.
        assert_eq!(text("user.nickName + \" (nick)\""), None);
        assert_eq!(text("user.nickName + user.firstName").as_deref(), Some("Alice"));
        assert_eq!(text("'fixed'").as_deref(), Some("fixed"));
        assert_eq!(text("String.toUpperCase(user.lastName)").as_deref(), Some("SMITH"));
        assert_eq!(text("String.substringBefore(user.email, \"@\")").as_deref(), Some("alice"));
        assert_eq!(text("String.substringAfter(user.email, \"@\")").as_deref(), Some("example.com"));
        assert_eq!(text("String.join(\",\", user.firstName, user.lastName)").as_deref(), Some("Alice,Smith"));
        assert_eq!(text("user.department == \"Engineering\" ? \"eng\" : \"other\"").as_deref(), Some("eng"));
        let template = Expression::parse_template("${user.userName}").unwrap();
        assert_eq!(template.evaluate(&Subject::user(&alice())).as_deref(), Some("alice@example.com"));
    }

    #[test]
    fn conditions_compare_combine_and_read_groups() {
        assert!(holds("user.department == \"Engineering\"", &[]));
        assert!(!holds("user.department != \"Engineering\"", &[]));
        assert!(holds(
            "user.department == \"Sales\" || String.stringContains(user.email, \"@example\")",
            &[]
        ));
        assert!(!holds("user.department == \"Sales\" && true", &[]));
        assert!(holds("!(user.department == \"Sales\") AND user.lastName == 'Smith'", &[]));
        assert!(holds("user.nickName == null", &[]));
        assert!(holds(
            "String.startsWith(user.email, \"alice\") && String.endsWith(user.email, \".com\")",
            &[]
        ));
        assert!(holds("isMemberOfAnyGroup(\"00gA\", \"00gB\")", &["00gB"]));
        assert!(!holds("isMemberOfGroup(\"00gA\")", &["00gB"]));
        assert!(Expression::parse_condition("isMemberOfGroup(\"00gA\")").unwrap().uses_groups());
        assert!(!Expression::parse_condition("user.a == 'b'").unwrap().uses_groups());
    }

    #[test]
    fn refusals_say_where_and_why() {
        let error = |e: &str, condition: bool| {
            if condition { Expression::parse_condition(e) } else { Expression::parse(e) }.unwrap_err()
        };
        assert_eq!(error("user.department == ", true).position, 20);
        assert_eq!(error("user.a == 'x' && user.b", true).position, 18);
        assert!(error("String.reverse(user.a)", false).message.contains("String.reverse"));
        assert_eq!(error("user.email", true).position, 1, "a text is not a condition");
        assert_eq!(error("user.a == 'x'", false).position, 1, "a condition is not text");
        assert_eq!(error("'open", false).message, "unterminated string literal");
        assert_eq!(error("user.a ~ 'x'", true).position, 8);
        assert!(error("app.x", false).message.contains("unknown name app.x"));
        assert!(error("isMemberOfGroup(user.a)", true).message.contains("quoted group ids"));
        assert!(error("String.toUpperCase()", false).message.contains("takes 1 argument"));
        assert!(Expression::parse_template("user.login").is_err());
        let deep = format!("{}true{}", "(".repeat(100), ")".repeat(100));
        assert!(error(&deep, true).message.contains("nested too deeply"));
        let long = "user.a + ".repeat(200) + "user.b";
        assert!(error(&long, false).message.contains("limited to"));
    }
}
