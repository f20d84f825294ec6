//! Group lists: `q=` (a prefix of the name), and Okta's `filter=` and `search=` expressions over
//! the group fields the stores index (parsed by `crate::filter`).

use super::GroupType;
use crate::error::CoreError;
use crate::filter::{self, Fields, Kind};

/// A group search expression.
pub type Expr = filter::Expr<Field>;
/// A typed comparison value of a group search.
pub type Operand = filter::Operand<GroupType>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Id,
    Type,
    Created,
    LastUpdated,
    LastMembershipUpdated,
    Name,
    Description,
}

impl Fields for Field {
    type Enum = GroupType;

    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "id" => Field::Id,
            "type" => Field::Type,
            "created" => Field::Created,
            "lastUpdated" => Field::LastUpdated,
            "lastMembershipUpdated" => Field::LastMembershipUpdated,
            "profile.name" => Field::Name,
            "profile.description" => Field::Description,
            _ => return None,
        })
    }

    fn kind(self) -> Kind {
        match self {
            Field::Type => Kind::Enum,
            Field::Created | Field::LastUpdated | Field::LastMembershipUpdated => Kind::Time,
            Field::Id => Kind::Exact,
            Field::Name | Field::Description => Kind::Text,
        }
    }

    fn parse_enum(raw: &str) -> Option<GroupType> {
        GroupType::parse(raw)
    }
}

/// What `GET /api/v1/groups` asks the store for: every condition given, the page cut after them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupQuery {
    /// `q=`: the name starts with this (lower-cased: case-insensitive).
    pub name_prefix: Option<String>,
    /// `filter=` and `search=`, both as conditions (Okta's `search` is the richer of the two; both
    /// take the same fields here).
    pub conditions: Vec<Expr>,
    /// Groups with an id after this one (the `after` cursor).
    pub after: Option<String>,
    pub limit: u32,
}

impl GroupQuery {
    pub fn with_prefix(mut self, q: &str) -> Result<Self, CoreError> {
        if q.chars().count() > 256 {
            return Err(CoreError::InvalidQuery("q is too long".into()));
        }
        self.name_prefix = Some(q.trim().to_lowercase());
        Ok(self)
    }

    pub fn with_condition(mut self, text: &str) -> Result<Self, CoreError> {
        self.conditions.push(filter::parse(text)?);
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::Op;

    #[test]
    fn group_fields_are_typed_and_others_refused() {
        let query = GroupQuery::default()
            .with_condition(r#"type eq "OKTA_GROUP" and profile.name sw "Eng""#)
            .unwrap();
        let filter::Expr::And(left, right) = &query.conditions[0] else { panic!("and") };
        assert_eq!(
            **left,
            filter::Expr::Compare { field: Field::Type, op: Op::Eq, operand: Operand::Enum(GroupType::Okta) }
        );
        assert_eq!(
            **right,
            filter::Expr::Compare {
                field: Field::Name,
                op: Op::StartsWith,
                operand: Operand::Text("eng".into())
            }
        );
        for bad in [r#"type eq "APP_GROUP""#, r#"profile.owner eq "x""#, r#"type sw "O""#, r#"id gt "00g""#] {
            assert!(
                matches!(GroupQuery::default().with_condition(bad), Err(CoreError::InvalidQuery(_))),
                "{bad}"
            );
        }
    }
}
