//! Conflict targets: columns, tuples of columns, hstore keys, index expressions, named
//! constraints.
//!
//! A target is turned into a run-time [`Target`] when `on_conflict_do` is called, so the
//! builder's type does not depend on it. The marker type parameter `M` of the traits below only
//! lets the compiler tell a column from a tuple of columns (a crate other than Diesel cannot
//! implement one trait for both `C: Column` and tuples).

use crate::error::Error;
use crate::literal::{self, quote_literal, Piece};
use diesel::expression::{AppearsOnTable, Expression};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment};
use diesel::result::QueryResult;
use diesel::{Column, Table};
use std::borrow::Cow;

/// One element of a conflict target, read at run time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyPart {
    /// A plain column: `"sku"`.
    Column(&'static str),
    /// A key of an hstore column: `("title" -> 'en')`.
    HstoreKey {
        column: &'static str,
        key: Cow<'static, str>,
    },
    /// The expression of a unique expression index: `(lower("email"))`.
    Expression(KeyExpression),
}

/// An index expression as SQL text, values written as escaped literals, with its references
/// to the table's columns taken out so that each statement can read them from the table or from
/// an input row; or why the expression cannot be a conflict target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyExpression(Result<Vec<ExpressionPiece>, String>);

/// A piece of an index expression: text, or one of the table's columns.
pub(crate) type ExpressionPiece = Piece<&'static str>;

impl KeyExpression {
    /// The pieces of the expression (checked by [`Target::check`] before any is written).
    fn pieces(&self) -> QueryResult<&[ExpressionPiece]> {
        self.0.as_deref().map_err(|reason| {
            diesel::result::Error::QueryBuilderError(Error::invalid_target(reason).into())
        })
    }

    /// The columns the expression reads, each once, in order of appearance.
    pub(crate) fn columns(&self) -> Vec<&'static str> {
        let mut columns = Vec::new();
        for piece in self.0.as_deref().unwrap_or_default() {
            if let Piece::Column(c) = piece {
                if !columns.contains(c) {
                    columns.push(*c);
                }
            }
        }
        columns
    }

    /// Writes `(<expression>)`, each column written by `column`.
    pub(crate) fn walk<'b>(
        &self,
        out: &mut AstPass<'_, 'b, Pg>,
        mut column: impl FnMut(&'static str, &mut AstPass<'_, 'b, Pg>) -> QueryResult<()>,
    ) -> QueryResult<()> {
        out.push_sql("(");
        for piece in self.pieces()? {
            match piece {
                Piece::Sql(sql) => out.push_sql(sql),
                Piece::Column(name) => column(name, out)?,
            }
        }
        out.push_sql(")");
        Ok(())
    }
}

impl KeyPart {
    /// Writes the element; `qualify` writes the table or alias its column is read from (and
    /// nothing for an unqualified column).
    pub(crate) fn walk_on<'b>(
        &self,
        out: &mut AstPass<'_, 'b, Pg>,
        qualify: impl Fn(&mut AstPass<'_, 'b, Pg>) -> QueryResult<bool>,
    ) -> QueryResult<()> {
        let column = |out: &mut AstPass<'_, 'b, Pg>, name: &str| -> QueryResult<()> {
            if qualify(out)? {
                out.push_sql(".");
            }
            out.push_identifier(name)
        };
        match self {
            KeyPart::Column(name) => column(out, name),
            KeyPart::HstoreKey { column: name, key } => {
                out.push_sql("(");
                column(out, name)?;
                out.push_sql(" -> ");
                out.push_sql(&quote_literal(key)?);
                out.push_sql(")");
                Ok(())
            }
            KeyPart::Expression(expression) => expression.walk(out, |name, out| column(out, name)),
        }
    }

    /// The element written on its own, its columns unqualified (migrations).
    pub(crate) fn unqualified(&self) -> Unqualified<'_> {
        Unqualified(self)
    }

    /// The columns this element reads.
    pub(crate) fn columns(&self) -> Vec<&'static str> {
        match self {
            KeyPart::Column(c) | KeyPart::HstoreKey { column: c, .. } => vec![c],
            KeyPart::Expression(expression) => expression.columns(),
        }
    }
}

/// A part written on its own, its columns unqualified: `"sku"`, `(lower("email"))`.
pub(crate) struct Unqualified<'a>(&'a KeyPart);

impl QueryFragment<Pg> for Unqualified<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_on(&mut out, unqualified)
    }
}

/// Writes no qualifier.
pub(crate) fn unqualified(_: &mut AstPass<'_, '_, Pg>) -> QueryResult<bool> {
    Ok(false)
}

/// A conflict target, read at run time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target(pub(crate) TargetKind);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum TargetKind {
    Parts(Vec<KeyPart>),
    Constraint(String),
}

impl Target {
    /// Writes `("a", ("h" -> 'k'))` or `ON CONSTRAINT "name"`.
    pub(crate) fn walk(&self, out: &mut AstPass<'_, '_, Pg>) -> QueryResult<()> {
        match &self.0 {
            TargetKind::Parts(parts) => {
                out.push_sql("(");
                for (i, part) in parts.iter().enumerate() {
                    if i > 0 {
                        out.push_sql(", ");
                    }
                    part.walk_on(out, unqualified)?;
                }
                out.push_sql(")");
                Ok(())
            }
            TargetKind::Constraint(name) => {
                out.push_sql("ON CONSTRAINT ");
                out.push_identifier(name)
            }
        }
    }

    /// The target as SQL text: `("sku")`, `((lower("email")))`, `ON CONSTRAINT "name"`.
    pub(crate) fn sql(&self) -> QueryResult<String> {
        struct TargetSql<'a>(&'a Target);
        impl QueryFragment<Pg> for TargetSql<'_> {
            fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
                self.0.walk(&mut out)
            }
        }
        literal::render(&TargetSql(self)).map(|(sql, _)| sql)
    }

    /// The plain columns of the target: they are never in the `SET` list.
    pub(crate) fn plain_columns(&self) -> impl Iterator<Item = &'static str> + '_ {
        let parts = match &self.0 {
            TargetKind::Parts(parts) => parts.as_slice(),
            TargetKind::Constraint(_) => &[],
        };
        parts.iter().filter_map(|p| match p {
            KeyPart::Column(c) => Some(*c),
            KeyPart::HstoreKey { .. } | KeyPart::Expression(_) => None,
        })
    }

    pub(crate) fn constraint(&self) -> Option<&str> {
        match &self.0 {
            TargetKind::Constraint(name) => Some(name),
            TargetKind::Parts(_) => None,
        }
    }

    pub(crate) fn parts(&self) -> Option<&[KeyPart]> {
        match &self.0 {
            TargetKind::Parts(parts) => Some(parts),
            TargetKind::Constraint(_) => None,
        }
    }

    pub(crate) fn check(&self) -> Result<(), Error> {
        if let TargetKind::Parts(parts) = &self.0 {
            for part in parts {
                match part {
                    KeyPart::HstoreKey { key, .. } => {
                        quote_literal(key)?;
                    }
                    KeyPart::Expression(KeyExpression(Err(reason))) => {
                        return Err(Error::invalid_target(reason.clone()));
                    }
                    KeyPart::Column(_) | KeyPart::Expression(_) => {}
                }
            }
        }
        Ok(())
    }
}

/// Marker for a target element that is a plain column.
#[derive(Debug)]
pub enum ColumnElement {}

/// Marker for a target element that is a key of an hstore column (`title.key("en")`).
#[derive(Debug)]
pub enum HstoreKeyElement {}

/// Marker for a target element that is the expression of a unique expression index
/// ([`index_expression`](crate::index_expression)).
#[derive(Debug)]
pub enum ExpressionElement {}

/// Marker for a conflict target of one element.
#[derive(Debug)]
pub struct One<M>(std::marker::PhantomData<M>);

/// Marker for a conflict target that is a named constraint.
#[derive(Debug)]
pub enum ConstraintTarget {}

/// Marker for a list of several columns.
#[derive(Debug)]
pub enum Many {}

/// The methods behind the public target traits: sealed (this module is private), so that only
/// this crate implements them and their run-time types stay private, the way Diesel seals its
/// upsert target traits.
pub(crate) mod sealed {
    use super::{KeyPart, Target};

    /// See [`TargetElement`](super::TargetElement).
    pub trait Element<T, M> {
        /// The element, read at run time.
        fn key_part(self) -> KeyPart;
    }

    /// See [`IntoConflictTarget`](super::IntoConflictTarget).
    pub trait IntoTarget<T, M> {
        /// The target, read at run time.
        fn into_target(self) -> Target;
    }

    /// See [`ColumnSet`](super::ColumnSet).
    pub trait Columns<T, M> {
        /// The names of the columns.
        fn column_names(&self) -> Vec<&'static str>;
    }
}

use sealed::{Columns, Element, IntoTarget};

/// One element of a conflict target on table `T`: a column of `T` or a key of one of its
/// hstore columns (`title.key("en")`). Implemented by this crate only.
pub trait TargetElement<T, M>: Element<T, M> {}

impl<T, M, E: Element<T, M>> TargetElement<T, M> for E {}

/// Something `on_conflict_do` accepts as the conflict target on table `T`: a column, a tuple of
/// columns and hstore keys, or [`on_constraint`](crate::on_constraint). Implemented by this
/// crate only.
pub trait IntoConflictTarget<T, M>: IntoTarget<T, M> {}

impl<T, M, X: IntoTarget<T, M>> IntoConflictTarget<T, M> for X {}

/// One column or a tuple of columns of table `T`, as `update_only` takes them. Implemented by
/// this crate only.
pub trait ColumnSet<T, M>: Columns<T, M> {}

impl<T, M, X: Columns<T, M>> ColumnSet<T, M> for X {}

impl<C: Column> Element<C::Table, ColumnElement> for C {
    fn key_part(self) -> KeyPart {
        KeyPart::Column(C::NAME)
    }
}

impl<T, E, M> IntoTarget<T, One<M>> for E
where
    E: Element<T, M>,
{
    fn into_target(self) -> Target {
        Target(TargetKind::Parts(vec![self.key_part()]))
    }
}

macro_rules! tuple_target {
    ($($E:ident $M:ident . $idx:tt),+) => {
        impl<Tab, $($E, $M),+> IntoTarget<Tab, ($($M,)+)> for ($($E,)+)
        where
            $($E: Element<Tab, $M>,)+
        {
            fn into_target(self) -> Target {
                Target(TargetKind::Parts(vec![$(self.$idx.key_part()),+]))
            }
        }
    };
}

tuple_target!(A MA.0, B MB.1);
tuple_target!(A MA.0, B MB.1, C MC.2);
tuple_target!(A MA.0, B MB.1, C MC.2, D MD.3);
tuple_target!(A MA.0, B MB.1, C MC.2, D MD.3, E ME.4);
tuple_target!(A MA.0, B MB.1, C MC.2, D MD.3, E ME.4, F MF.5);
tuple_target!(A MA.0, B MB.1, C MC.2, D MD.3, E ME.4, F MF.5, G MG.6);
tuple_target!(A MA.0, B MB.1, C MC.2, D MD.3, E ME.4, F MF.5, G MG.6, H MH.7);

/// The expression of a unique expression index as conflict target element, such as
/// `lower("email")`. Made by [`index_expression`](crate::index_expression).
#[derive(Debug, Clone, Copy)]
pub struct IndexExpression<E>(pub(crate) E);

impl<T, E> Element<T, ExpressionElement> for IndexExpression<E>
where
    T: Table + Default,
    T::FromClause: QueryFragment<Pg>,
    E: Expression + AppearsOnTable<T> + QueryFragment<Pg>,
{
    fn key_part(self) -> KeyPart {
        KeyPart::Expression(KeyExpression(key_expression(&T::default(), &self.0)))
    }
}

/// The pieces of `expression` on `table`, or why it cannot be a conflict target.
fn key_expression<T, E>(table: &T, expression: &E) -> Result<Vec<ExpressionPiece>, String>
where
    T: Table,
    T::FromClause: QueryFragment<Pg>,
    E: QueryFragment<Pg>,
{
    let reason = |e: Error| match e {
        Error::InvalidTarget { reason } => reason,
        other => other.to_string(),
    };
    let sql = literal::inline_binds(expression, "the index expression").map_err(reason)?;
    let (table_sql, _) = literal::render(&table.from_clause())
        .map_err(|e| reason(Error::invalid_target(e.to_string())))?;
    let pieces = literal::column_references(&sql, &table_sql, intern);
    if !pieces.iter().any(|p| matches!(p, Piece::Column(_))) {
        return Err(format!(
            "the index expression {sql} reads no column of {table_sql}; \
             a conflict target must read the table's columns through Diesel's column types"
        ));
    }
    Ok(pieces)
}

/// The name as a `&'static str`, like Diesel's `Column::NAME`, stored once per process: a
/// program names finitely many columns.
fn intern(name: String) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(found) = names.get(name.as_str()) {
        return found;
    }
    let leaked: &'static str = Box::leak(name.into_boxed_str());
    names.insert(leaked);
    leaked
}

/// A named unique or exclusion constraint as conflict target: `ON CONFLICT ON CONSTRAINT "name"`.
///
/// Made by [`on_constraint`](crate::on_constraint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnConstraint(pub(crate) String);

impl<T> IntoTarget<T, ConstraintTarget> for OnConstraint {
    fn into_target(self) -> Target {
        Target(TargetKind::Constraint(self.0))
    }
}

impl<C: Column> Columns<C::Table, ColumnElement> for C {
    fn column_names(&self) -> Vec<&'static str> {
        vec![C::NAME]
    }
}

macro_rules! tuple_column_set {
    ($($C:ident . $idx:tt),+) => {
        impl<Tab, $($C),+> Columns<Tab, Many> for ($($C,)+)
        where
            $($C: Column<Table = Tab>,)+
        {
            fn column_names(&self) -> Vec<&'static str> {
                vec![$($C::NAME),+]
            }
        }
    };
}

crate::rows::all_tuples!(tuple_column_set);
