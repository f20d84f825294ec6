//! Okta's `filter=` and `search=` expressions (SCIM-like: `status eq "ACTIVE" and (profile.login sw
//! "a" or lastUpdated gt "2024-01-01T00:00:00.000Z")`), parsed into a small typed tree that storage
//! adapters translate into parameterised queries. Each list that supports them (users, groups)
//! names its searchable fields and their kinds ([`Fields`]); anything else is refused as invalid
//! criteria rather than silently ignored. Sizes are bounded (expression length, number of
//! conditions, nesting) so a hostile expression costs little to refuse.

use std::fmt::Debug;

use crate::clock::Timestamp;
use crate::error::CoreError;

const MAX_EXPRESSION_LEN: usize = 2048;
const MAX_CONDITIONS: usize = 32;
const MAX_DEPTH: usize = 8;

/// What a field holds, which decides the operators it takes and how its values are typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One of a fixed set of words (a status, a type).
    Enum,
    Time,
    /// Compared exactly (ids).
    Exact,
    /// Compared without regard to case.
    Text,
}

/// The searchable fields of one kind of object.
pub trait Fields: Copy + PartialEq + Debug + Sized {
    /// The values of the field of kind [`Kind::Enum`].
    type Enum: Copy + PartialEq + Debug;

    fn parse(name: &str) -> Option<Self>;

    fn kind(self) -> Kind;

    /// An enum value by its Okta name; `None` when it names none.
    fn parse_enum(raw: &str) -> Option<Self::Enum>;
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
            Kind::Enum | Kind::Exact => matches!(self, Op::Eq | Op::Ne | Op::Present),
            Kind::Text => matches!(self, Op::Eq | Op::Ne | Op::StartsWith | Op::Contains | Op::Present),
            Kind::Time => !matches!(self, Op::StartsWith | Op::Contains),
        }
    }
}

/// A comparison value, already typed for its field. Text values are lower-cased: text comparisons
/// are case-insensitive like Okta's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand<E> {
    None,
    Text(String),
    Enum(E),
    Time(Timestamp),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr<F: Fields> {
    Compare { field: F, op: Op, operand: Operand<F::Enum> },
    And(Box<Expr<F>>, Box<Expr<F>>),
    Or(Box<Expr<F>>, Box<Expr<F>>),
}

/// Parses an expression over the fields `F`.
pub fn parse<F: Fields>(text: &str) -> Result<Expr<F>, CoreError> {
    if text.len() > MAX_EXPRESSION_LEN {
        return Err(CoreError::InvalidQuery("expression is too long".into()));
    }
    let tokens = tokenize(text)?;
    let mut parser = Parser { tokens, pos: 0, conditions: 0 };
    let expr = parser.or_expr::<F>(0)?;
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

    fn or_expr<F: Fields>(&mut self, depth: usize) -> Result<Expr<F>, CoreError> {
        let mut left = self.and_expr(depth)?;
        while self.peek_keyword("or") {
            self.pos += 1;
            let right = self.and_expr(depth)?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_expr<F: Fields>(&mut self, depth: usize) -> Result<Expr<F>, CoreError> {
        let mut left = self.primary(depth)?;
        while self.peek_keyword("and") {
            self.pos += 1;
            let right = self.primary(depth)?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn primary<F: Fields>(&mut self, depth: usize) -> Result<Expr<F>, CoreError> {
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

    fn comparison<F: Fields>(&mut self, name: &str) -> Result<Expr<F>, CoreError> {
        self.conditions += 1;
        if self.conditions > MAX_CONDITIONS {
            return Err(CoreError::InvalidQuery("too many conditions".into()));
        }
        let field = F::parse(name)
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
            Kind::Enum => Operand::Enum(
                F::parse_enum(&raw)
                    .ok_or_else(|| CoreError::InvalidQuery(format!("'{raw}' is not a value of '{name}'")))?,
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
