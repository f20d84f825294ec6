//! Okta `filter=`/`search=` trees (`latchkey_core::filter`) as parameterised SQL conditions: every
//! value is bound, never spliced into the text; each list names the column of each field.

use latchkey_core::filter::{Expr, Fields, Kind, Op, Operand};

use crate::Bind;
use crate::users::escape_like;

/// The SQL condition for `expr`, pushing its values onto `binds` (placeholders continue after the
/// binds already there). `column` names each field's column (text fields: a lower-cased column);
/// `enum_text` gives an enum value as stored.
pub(crate) fn sql_of<F: Fields>(
    expr: &Expr<F>,
    binds: &mut Vec<Bind>,
    column: fn(F) -> &'static str,
    enum_text: fn(F::Enum) -> &'static str,
) -> String {
    match expr {
        Expr::And(a, b) => {
            format!("({} AND {})", sql_of(a, binds, column, enum_text), sql_of(b, binds, column, enum_text))
        }
        Expr::Or(a, b) => {
            format!("({} OR {})", sql_of(a, binds, column, enum_text), sql_of(b, binds, column, enum_text))
        }
        Expr::Compare { field, op, operand } => {
            let name = column(*field);
            if *op == Op::Present {
                // The "absent" value: '' for text columns, a number never stored for times.
                let empty = if field.kind() == Kind::Time { "-1" } else { "''" };
                return format!("({name} IS NOT NULL AND {name} <> {empty})");
            }
            let (bind, pattern) = match operand {
                Operand::Text(text) => match op {
                    Op::StartsWith => (Bind::Text(format!("{}%", escape_like(text))), true),
                    Op::Contains => (Bind::Text(format!("%{}%", escape_like(text))), true),
                    _ => (Bind::Text(text.clone()), false),
                },
                Operand::Enum(value) => (Bind::Text(enum_text(*value).to_owned()), false),
                Operand::Time(t) => (Bind::Int(t.millis()), false),
                Operand::None => return "1 = 0".to_owned(),
            };
            binds.push(bind);
            let n = binds.len();
            if pattern {
                return format!("{name} LIKE ${n} ESCAPE '\\'");
            }
            let symbol = match op {
                Op::Eq => "=",
                Op::Ne => "<>",
                Op::Gt => ">",
                Op::Ge => ">=",
                Op::Lt => "<",
                Op::Le => "<=",
                Op::StartsWith | Op::Contains | Op::Present => "=",
            };
            format!("{name} {symbol} ${n}")
        }
    }
}
