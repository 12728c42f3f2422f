//! Key expressions: `("title" -> 'en')` in queries and as conflict targets.

use super::Hstore;
use crate::literal::quote_literal;
use crate::target::sealed::Element;
use crate::target::{HstoreKeyElement, KeyPart};
use diesel::expression::{AppearsOnTable, Expression, SelectableExpression, ValidGrouping};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::result::QueryResult;
use diesel::sql_types::{Nullable, SqlType, Text};
use diesel::Column;
use std::borrow::Cow;

// Key expressions

/// The SQL types [`HstoreExpressionMethods`] applies to: [`Hstore`] and `Nullable<Hstore>`.
pub trait HstoreOrNullableHstore: SqlType {}

impl HstoreOrNullableHstore for Hstore {}
impl HstoreOrNullableHstore for Nullable<Hstore> {}

/// Methods on hstore expressions (columns of type `Hstore` or `Nullable<Hstore>`).
pub trait HstoreExpressionMethods: Expression + Sized {
    /// The value of `key`: `("title" -> 'en')`, of SQL type `Nullable<Text>` (`NULL` when the
    /// key is missing, its value is `NULL`, or the hstore is `NULL`).
    ///
    /// Takes a `&'static str` or a `String`. The key is written into the SQL as an escaped
    /// literal, never as a bind parameter: a conflict target must be, so that PostgreSQL can
    /// match it against the unique index on every execution of the prepared statement. A key
    /// holding `'`, `\`, `--`, `;` or any other text is safe; a key holding a NUL byte fails the
    /// statement before it is sent ([`Error::InvalidTarget`](crate::Error::InvalidTarget) from
    /// this crate's terminals, a `QueryBuilderError` from Diesel's).
    ///
    /// As conflict target, alone or in a tuple with other keys and columns, it needs a unique
    /// index on the same expression (see [`unique_index`](super::unique_index)).
    ///
    /// ```rust
    /// # include!("../doctest_setup.rs");
    /// use diesel_upsert::prelude::*;
    ///
    /// # fn main() { run().unwrap() }
    /// # fn run() -> diesel::QueryResult<()> {
    /// # let conn = &mut establish_connection();
    /// let query = articles::table
    ///     .select(articles::title.key("en"))
    ///     .filter(articles::title.key("ar").eq("شاي"))
    ///     .order_by(articles::title.key(String::from("en")));
    /// assert_eq!(
    ///     diesel::debug_query::<diesel::pg::Pg, _>(&query).to_string(),
    ///     r#"SELECT ("articles"."title" -> 'en') FROM "articles" WHERE (("articles"."title" -> 'ar') = $1) ORDER BY ("articles"."title" -> 'en') -- binds: ["شاي"]"#
    /// );
    /// let titles: Vec<Option<String>> = query.load(conn)?;
    /// # assert!(titles.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    fn key(self, key: impl Into<Cow<'static, str>>) -> HstoreKey<Self> {
        HstoreKey {
            expr: self,
            key: key.into(),
        }
    }
}

impl<T> HstoreExpressionMethods for T
where
    T: Expression,
    T::SqlType: HstoreOrNullableHstore,
{
}

/// `(<hstore expression> -> 'key')`, made by [`HstoreExpressionMethods::key`]: an expression
/// of SQL type `Nullable<Text>`, and a conflict-target element when the expression is a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HstoreKey<E> {
    expr: E,
    key: Cow<'static, str>,
}

impl<E> Expression for HstoreKey<E>
where
    E: Expression,
    E::SqlType: HstoreOrNullableHstore,
{
    type SqlType = Nullable<Text>;
}

impl<E, GB> ValidGrouping<GB> for HstoreKey<E>
where
    E: ValidGrouping<GB>,
{
    type IsAggregate = E::IsAggregate;
}

impl<E, QS> AppearsOnTable<QS> for HstoreKey<E>
where
    E: AppearsOnTable<QS>,
    Self: Expression,
{
}

impl<E, QS> SelectableExpression<QS> for HstoreKey<E>
where
    E: SelectableExpression<QS>,
    Self: AppearsOnTable<QS>,
{
}

impl<E: QueryFragment<Pg>> QueryFragment<Pg> for HstoreKey<E> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("(");
        self.expr.walk_ast(out.reborrow())?;
        out.push_sql(" -> ");
        out.push_sql(&quote_literal(&self.key)?);
        out.push_sql(")");
        Ok(())
    }
}

impl<E> QueryId for HstoreKey<E> {
    type QueryId = ();
    // The key is part of the SQL text: Diesel caches the prepared statement by its text.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<C> Element<C::Table, HstoreKeyElement> for HstoreKey<C>
where
    C: Column,
    C::SqlType: HstoreOrNullableHstore,
{
    fn key_part(self) -> KeyPart {
        KeyPart::HstoreKey {
            column: C::NAME,
            key: self.key,
        }
    }
}
