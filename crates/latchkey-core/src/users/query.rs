//! User search: Okta's `filter=` / `search=` expressions over the user fields the stores index
//! (parsed by `crate::filter`), and `q=` prefix lookups.

use crate::error::CoreError;
use crate::filter::{self, Fields, Kind};
use crate::users::UserStatus;

pub use crate::filter::Op;

/// A user search expression.
pub type Expr = filter::Expr<Field>;
/// A typed comparison value of a user search.
pub type Operand = filter::Operand<UserStatus>;

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

impl Fields for Field {
    type Enum = UserStatus;

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
            Field::Status => Kind::Enum,
            Field::Created | Field::LastUpdated | Field::StatusChanged => Kind::Time,
            Field::Id => Kind::Exact,
            Field::Login | Field::Email | Field::FirstName | Field::LastName => Kind::Text,
        }
    }

    fn parse_enum(raw: &str) -> Option<UserStatus> {
        UserStatus::parse(raw)
    }
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
    filter::parse(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;

    #[test]
    fn parses_precedence_and_parentheses() {
        let e = parse(r#"status eq "ACTIVE" or profile.login sw "A" and id eq "00u1""#).unwrap();
        let Expr::Or(left, right) = e else { panic!("or binds loosest") };
        assert_eq!(
            *left,
            Expr::Compare { field: Field::Status, op: Op::Eq, operand: Operand::Enum(UserStatus::Active) }
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
