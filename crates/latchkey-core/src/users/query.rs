//! User search: Okta's `filter=` / `search=` expressions (SCIM-like) and `q=` prefix lookups, parsed
//! into a small typed tree that storage adapters translate into parameterised queries.
//!
//! Only fields the stores index are searchable; anything else is refused as invalid criteria rather
//! than silently ignored. Sizes are bounded (expression length, number of conditions, nesting) so a
//! hostile expression costs little to refuse.

use crate::clock::Timestamp;
use crate::error::CoreError;
use crate::users::UserStatus;

const MAX_EXPRESSION_LEN: usize = 2048;
const MAX_CONDITIONS: usize = 32;
const MAX_DEPTH: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Id,
    Status,
    Created,
    LastUpdated,
    StatusChanged,
    Login,
    Email,
    FirstName,
    LastName,
}

impl Field {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "id" => Field::Id,
            "status" => Field::Status,
            "created" => Field::Created,
            "lastUpdated" => Field::LastUpdated,
            "statusChanged" => Field::StatusChanged,
            "profile.login" => Field::Login,
            "profile.email" => Field::Email,
            "profile.firstName" => Field::FirstName,
            "profile.lastName" => Field::LastName,
            _ => return None,
        })
    }

    fn kind(self) -> Kind {
        match self {
            Field::Status => Kind::Status,
            Field::Created | Field::LastUpdated | Field::StatusChanged => Kind::Time,
            Field::Id => Kind::Exact,
            Field::Login | Field::Email | Field::FirstName | Field::LastName => Kind::Text,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Status,
    Time,
    Exact,
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    StartsWith,
    Contains,
    Present,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    fn parse(word: &str) -> Option<Self> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "sw" => Op::StartsWith,
            "co" => Op::Contains,
            "pr" => Op::Present,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            _ => return None,
        })
    }

    fn allowed_for(self, kind: Kind) -> bool {
        match kind {
            Kind::Status | Kind::Exact => matches!(self, Op::Eq | Op::Ne | Op::Present),
            Kind::Text => matches!(self, Op::Eq | Op::Ne | Op::StartsWith | Op::Contains | Op::Present),
            Kind::Time => !matches!(self, Op::StartsWith | Op::Contains),
        }
    }
}

/// A comparison value, already typed for its field. Text values are lower-cased: text comparisons
/// are case-insensitive like Okta's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    None,
    Text(String),
    Status(UserStatus),
    Time(Timestamp),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Compare { field: Field, op: Op, operand: Operand },
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

/// What the list endpoint asks the store for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum UserQuery {
    #[default]
    All,
    /// `q=`: prefix match on login, email, first or last name.
    Prefix(String),
    Expr(Expr),
}

impl UserQuery {
    pub fn prefix(text: &str) -> Result<Self, CoreError> {
        if text.chars().count() > 256 {
            return Err(CoreError::InvalidQuery("q is too long".into()));
        }
        Ok(UserQuery::Prefix(text.trim().to_lowercase()))
    }

    pub fn expression(text: &str) -> Result<Self, CoreError> {
        Ok(UserQuery::Expr(parse(text)?))
    }
}

/// Parses `status eq "ACTIVE" and (profile.login sw "a" or lastUpdated gt "2024-01-01T00:00:00.000Z")`.
pub fn parse(text: &str) -> Result<Expr, CoreError> {
    if text.len() > MAX_EXPRESSION_LEN {
        return Err(CoreError::InvalidQuery("expression is too long".into()));
    }
    let tokens = tokenize(text)?;
    let mut parser = Parser { tokens, pos: 0, conditions: 0 };
    let expr = parser.or_expr(0)?;
    if parser.pos != parser.tokens.len() {
        return Err(CoreError::InvalidQuery("unexpected text after the expression".into()));
    }
    Ok(expr)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Open,
    Close,
}

fn tokenize(text: &str) -> Result<Vec<Token>, CoreError> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                tokens.push(Token::Open);
            }
            ')' => {
                chars.next();
                tokens.push(Token::Close);
            }
            '"' => {
                chars.next();
                let mut value = String::new();
                loop {
                    match chars.next() {
                        None => return Err(CoreError::InvalidQuery("unterminated string".into())),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(escaped) => value.push(escaped),
                            None => return Err(CoreError::InvalidQuery("unterminated string".into())),
                        },
                        Some(other) => value.push(other),
                    }
                }
                tokens.push(Token::Quoted(value));
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || c == '(' || c == ')' || c == '"' {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    conditions: usize,
}

impl Parser {
    fn peek_keyword(&self, keyword: &str) -> bool {
        matches!(self.tokens.get(self.pos), Some(Token::Word(w)) if w.eq_ignore_ascii_case(keyword))
    }

    fn or_expr(&mut self, depth: usize) -> Result<Expr, CoreError> {
        let mut left = self.and_expr(depth)?;
        while self.peek_keyword("or") {
            self.pos += 1;
            let right = self.and_expr(depth)?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_expr(&mut self, depth: usize) -> Result<Expr, CoreError> {
        let mut left = self.primary(depth)?;
        while self.peek_keyword("and") {
            self.pos += 1;
            let right = self.primary(depth)?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn primary(&mut self, depth: usize) -> Result<Expr, CoreError> {
        if depth > MAX_DEPTH {
            return Err(CoreError::InvalidQuery("expression is nested too deeply".into()));
        }
        match self.tokens.get(self.pos).cloned() {
            Some(Token::Open) => {
                self.pos += 1;
                let inner = self.or_expr(depth + 1)?;
                if self.tokens.get(self.pos) != Some(&Token::Close) {
                    return Err(CoreError::InvalidQuery("missing ')'".into()));
                }
                self.pos += 1;
                Ok(inner)
            }
            Some(Token::Word(name)) => {
                self.pos += 1;
                self.comparison(&name)
            }
            _ => Err(CoreError::InvalidQuery("expected an attribute name".into())),
        }
    }

    fn comparison(&mut self, name: &str) -> Result<Expr, CoreError> {
        self.conditions += 1;
        if self.conditions > MAX_CONDITIONS {
            return Err(CoreError::InvalidQuery("too many conditions".into()));
        }
        let field = Field::parse(name)
            .ok_or_else(|| CoreError::InvalidQuery(format!("'{name}' is not a searchable attribute")))?;
        let op = match self.tokens.get(self.pos) {
            Some(Token::Word(word)) => Op::parse(word),
            _ => None,
        }
        .ok_or_else(|| CoreError::InvalidQuery(format!("expected an operator after '{name}'")))?;
        self.pos += 1;
        if !op.allowed_for(field.kind()) {
            return Err(CoreError::InvalidQuery(format!("operator not supported for '{name}'")));
        }
        if op == Op::Present {
            return Ok(Expr::Compare { field, op, operand: Operand::None });
        }
        let Some(Token::Quoted(raw)) = self.tokens.get(self.pos).cloned() else {
            return Err(CoreError::InvalidQuery(format!("expected a quoted value for '{name}'")));
        };
        self.pos += 1;
        let operand = match field.kind() {
            Kind::Status => Operand::Status(
                UserStatus::parse(&raw)
                    .ok_or_else(|| CoreError::InvalidQuery(format!("'{raw}' is not a user status")))?,
            ),
            Kind::Time => Operand::Time(
                Timestamp::parse_iso(&raw)
                    .ok_or_else(|| CoreError::InvalidQuery(format!("'{raw}' is not a date-time")))?,
            ),
            Kind::Exact => Operand::Text(raw),
            Kind::Text => Operand::Text(raw.to_lowercase()),
        };
        Ok(Expr::Compare { field, op, operand })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_precedence_and_parentheses() {
        let e = parse(r#"status eq "ACTIVE" or profile.login sw "A" and id eq "00u1""#).unwrap();
        let Expr::Or(left, right) = e else { panic!("or binds loosest") };
        assert_eq!(
            *left,
            Expr::Compare { field: Field::Status, op: Op::Eq, operand: Operand::Status(UserStatus::Active) }
        );
        assert!(matches!(*right, Expr::And(_, _)));

        let e = parse(r#"(status eq "ACTIVE" or status eq "STAGED") and profile.email pr"#).unwrap();
        assert!(matches!(e, Expr::And(_, _)));
    }

    #[test]
    fn values_are_typed() {
        let e = parse(r#"lastUpdated gt "2015-11-03T10:15:57.000Z""#).unwrap();
        assert_eq!(
            e,
            Expr::Compare {
                field: Field::LastUpdated,
                op: Op::Gt,
                operand: Operand::Time(Timestamp(1_446_545_757_000))
            }
        );
        let e = parse(r#"profile.login eq "Quote\"Me@Example.com""#).unwrap();
        assert_eq!(
            e,
            Expr::Compare {
                field: Field::Login,
                op: Op::Eq,
                operand: Operand::Text("quote\"me@example.com".into())
            }
        );
    }

    #[test]
    fn refuses_bad_expressions() {
        for bad in [
            "",
            "status",
            r#"status eq ACTIVE"#,
            r#"status eq "HAPPY""#,
            r#"password eq "x""#,
            r#"status sw "A""#,
            r#"profile.login eq "x" and"#,
            r#"(status eq "ACTIVE""#,
            r#"profile.login eq "x"; DROP TABLE users"#,
            r#"created gt "tomorrow""#,
        ] {
            assert!(matches!(parse(bad), Err(CoreError::InvalidQuery(_))), "{bad}");
        }
        let deep = format!("{}status eq \"ACTIVE\"{}", "(".repeat(20), ")".repeat(20));
        assert!(parse(&deep).is_err());
        let many = vec![r#"status eq "ACTIVE""#; 40].join(" or ");
        assert!(parse(&many).is_err());
    }
}
