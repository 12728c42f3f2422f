//! Reading the records of an `InsertStatement` at run time: which columns a row supplies, and
//! the SQL of each value.
//!
//! Diesel renders an `Option` field that is `None` as `DEFAULT` and marks the whole statement as
//! unsafe to cache. This crate leaves such columns out of the column list instead (the same
//! effect on the inserted row), which keeps the SQL text a function of the supplied columns and
//! lets Diesel's statement cache prepare it once per connection.

use diesel::insertable::{ColumnInsertValue, DefaultableColumnInsertValue};
use diesel::pg::Pg;
use diesel::query_builder::bind_collector::RawBytesBindCollector;
use diesel::query_builder::{
    AstPass, BatchInsert, QueryBuilder, QueryFragment, QueryId, ValuesClause,
};
use diesel::result::QueryResult;
use diesel::sql_types::TypeMetadata;
use diesel::Column;
use std::marker::PhantomData;

/// One row of an insert, read at run time.
///
/// Implemented for the values Diesel builds from `Insertable` structs, `column.eq(value)` and
/// tuples of them; not meant to be implemented by hand.
pub trait RowValues<T> {
    /// Whether every value of this type whose row supplies the same columns renders the same
    /// SQL text, with binds of the same types: then what one row's SQL shows holds for all rows
    /// of a call (which supply the same columns). This is Diesel's static query id, the promise
    /// its statement cache relies on.
    const SAME_SHAPE: bool;

    /// Appends the names of the columns this row supplies a value for, in insert order.
    fn supplied_columns(&self, out: &mut Vec<&'static str>);

    /// Writes the supplied values, separated by commas; `first` tracks the separator.
    fn walk_values<'b>(
        &'b self,
        out: &mut AstPass<'_, 'b, Pg>,
        first: &mut bool,
    ) -> QueryResult<()>;

    /// Writes the value of `column`; returns `false` when this row does not supply it.
    fn walk_value_of<'b>(
        &'b self,
        column: &str,
        out: &mut AstPass<'_, 'b, Pg>,
    ) -> QueryResult<bool>;
}

impl<C, E> RowValues<C::Table> for ColumnInsertValue<C, E>
where
    C: Column,
    E: QueryId,
    Self: QueryFragment<Pg>,
{
    const SAME_SHAPE: bool = E::HAS_STATIC_QUERY_ID;

    fn supplied_columns(&self, out: &mut Vec<&'static str>) {
        out.push(C::NAME);
    }

    fn walk_values<'b>(
        &'b self,
        out: &mut AstPass<'_, 'b, Pg>,
        first: &mut bool,
    ) -> QueryResult<()> {
        if !std::mem::take(first) {
            out.push_sql(", ");
        }
        self.walk_ast(out.reborrow())
    }

    fn walk_value_of<'b>(
        &'b self,
        column: &str,
        out: &mut AstPass<'_, 'b, Pg>,
    ) -> QueryResult<bool> {
        if column == C::NAME {
            self.walk_ast(out.reborrow())?;
            Ok(true)
        } else {
            Ok(false)
        }
    }
}

impl<T, V> RowValues<T> for DefaultableColumnInsertValue<V>
where
    V: RowValues<T>,
{
    // `Default` or not changes the columns a row supplies, not the SQL of a supplied value.
    const SAME_SHAPE: bool = V::SAME_SHAPE;

    fn supplied_columns(&self, out: &mut Vec<&'static str>) {
        if let DefaultableColumnInsertValue::Expression(v) = self {
            v.supplied_columns(out);
        }
    }

    fn walk_values<'b>(
        &'b self,
        out: &mut AstPass<'_, 'b, Pg>,
        first: &mut bool,
    ) -> QueryResult<()> {
        match self {
            DefaultableColumnInsertValue::Expression(v) => v.walk_values(out, first),
            DefaultableColumnInsertValue::Default => Ok(()),
        }
    }

    fn walk_value_of<'b>(
        &'b self,
        column: &str,
        out: &mut AstPass<'_, 'b, Pg>,
    ) -> QueryResult<bool> {
        match self {
            DefaultableColumnInsertValue::Expression(v) => v.walk_value_of(column, out),
            DefaultableColumnInsertValue::Default => Ok(false),
        }
    }
}

impl<T, V> RowValues<T> for ValuesClause<V, T>
where
    V: RowValues<T>,
{
    const SAME_SHAPE: bool = V::SAME_SHAPE;

    fn supplied_columns(&self, out: &mut Vec<&'static str>) {
        self.values.supplied_columns(out);
    }

    fn walk_values<'b>(
        &'b self,
        out: &mut AstPass<'_, 'b, Pg>,
        first: &mut bool,
    ) -> QueryResult<()> {
        self.values.walk_values(out, first)
    }

    fn walk_value_of<'b>(
        &'b self,
        column: &str,
        out: &mut AstPass<'_, 'b, Pg>,
    ) -> QueryResult<bool> {
        self.values.walk_value_of(column, out)
    }
}

macro_rules! tuple_row_values {
    ($($T:ident . $idx:tt),+) => {
        impl<Tab, $($T),+> RowValues<Tab> for ($($T,)+)
        where
            $($T: RowValues<Tab>,)+
        {
            const SAME_SHAPE: bool = $($T::SAME_SHAPE)&&+;

            fn supplied_columns(&self, out: &mut Vec<&'static str>) {
                $(self.$idx.supplied_columns(out);)+
            }

            fn walk_values<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>, first: &mut bool) -> QueryResult<()> {
                $(self.$idx.walk_values(out, first)?;)+
                Ok(())
            }

            fn walk_value_of<'b>(&'b self, column: &str, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<bool> {
                $(if self.$idx.walk_value_of(column, out)? { return Ok(true); })+
                Ok(false)
            }
        }
    };
}

macro_rules! all_tuples {
    ($m:ident) => {
        $m!(A.0);
        $m!(A.0, B.1);
        $m!(A.0, B.1, C.2);
        $m!(A.0, B.1, C.2, D.3);
        $m!(A.0, B.1, C.2, D.3, E.4);
        $m!(A.0, B.1, C.2, D.3, E.4, F.5);
        $m!(A.0, B.1, C.2, D.3, E.4, F.5, G.6);
        $m!(A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7);
        $m!(A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8);
        $m!(A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9);
        $m!(A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10);
        $m!(A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10, L.11);
        $m!(A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10, L.11, M.12);
        $m!(A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10, L.11, M.12, N.13);
        $m!(A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10, L.11, M.12, N.13, O.14);
        $m!(A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10, L.11, M.12, N.13, O.14, P.15);
        $m!(
            A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10, L.11, M.12, N.13, O.14, P.15,
            Q.16
        );
        $m!(
            A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10, L.11, M.12, N.13, O.14, P.15,
            Q.16, R.17
        );
        $m!(
            A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10, L.11, M.12, N.13, O.14, P.15,
            Q.16, R.17, S.18
        );
        $m!(
            A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10, L.11, M.12, N.13, O.14, P.15,
            Q.16, R.17, S.18, T.19
        );
        $m!(
            A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10, L.11, M.12, N.13, O.14, P.15,
            Q.16, R.17, S.18, T.19, U.20
        );
        $m!(
            A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10, L.11, M.12, N.13, O.14, P.15,
            Q.16, R.17, S.18, T.19, U.20, V.21
        );
        $m!(
            A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10, L.11, M.12, N.13, O.14, P.15,
            Q.16, R.17, S.18, T.19, U.20, V.21, W.22
        );
        $m!(
            A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10, L.11, M.12, N.13, O.14, P.15,
            Q.16, R.17, S.18, T.19, U.20, V.21, W.22, X.23
        );
        $m!(
            A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10, L.11, M.12, N.13, O.14, P.15,
            Q.16, R.17, S.18, T.19, U.20, V.21, W.22, X.23, Y.24
        );
        $m!(
            A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10, L.11, M.12, N.13, O.14, P.15,
            Q.16, R.17, S.18, T.19, U.20, V.21, W.22, X.23, Y.24, Z.25
        );
        $m!(
            A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10, L.11, M.12, N.13, O.14, P.15,
            Q.16, R.17, S.18, T.19, U.20, V.21, W.22, X.23, Y.24, Z.25, AA.26
        );
        $m!(
            A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10, L.11, M.12, N.13, O.14, P.15,
            Q.16, R.17, S.18, T.19, U.20, V.21, W.22, X.23, Y.24, Z.25, AA.26, AB.27
        );
        $m!(
            A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10, L.11, M.12, N.13, O.14, P.15,
            Q.16, R.17, S.18, T.19, U.20, V.21, W.22, X.23, Y.24, Z.25, AA.26, AB.27, AC.28
        );
        $m!(
            A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10, L.11, M.12, N.13, O.14, P.15,
            Q.16, R.17, S.18, T.19, U.20, V.21, W.22, X.23, Y.24, Z.25, AA.26, AB.27, AC.28, AD.29
        );
        $m!(
            A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10, L.11, M.12, N.13, O.14, P.15,
            Q.16, R.17, S.18, T.19, U.20, V.21, W.22, X.23, Y.24, Z.25, AA.26, AB.27, AC.28, AD.29,
            AE.30
        );
        $m!(
            A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10, L.11, M.12, N.13, O.14, P.15,
            Q.16, R.17, S.18, T.19, U.20, V.21, W.22, X.23, Y.24, Z.25, AA.26, AB.27, AC.28, AD.29,
            AE.30, AF.31
        );
    };
}
pub(crate) use all_tuples;

all_tuples!(tuple_row_values);

/// Renders the values of one row, separated by commas.
pub(crate) struct ValuesOf<'a, R, T>(&'a R, PhantomData<fn() -> T>);

impl<'a, R, T> ValuesOf<'a, R, T> {
    pub(crate) fn new(row: &'a R) -> Self {
        ValuesOf(row, PhantomData)
    }
}

impl<R: RowValues<T>, T> QueryFragment<Pg> for ValuesOf<'_, R, T> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_values(&mut out, &mut true)
    }
}

/// Renders the value one row gives to one column (nothing when the row does not supply it).
pub(crate) struct ValueOf<'a, R, T> {
    row: &'a R,
    column: &'a str,
    _table: PhantomData<fn() -> T>,
}

impl<'a, R, T> ValueOf<'a, R, T> {
    pub(crate) fn new(row: &'a R, column: &'a str) -> Self {
        ValueOf {
            row,
            column,
            _table: PhantomData,
        }
    }
}

impl<R: RowValues<T>, T> QueryFragment<Pg> for ValueOf<'_, R, T> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.row.walk_value_of(self.column, &mut out).map(|_| ())
    }
}

/// The records of an insert statement: one row (`.values(&row)`) or a batch
/// (`.values(&rows)`).
pub trait Records<T> {
    /// The type of one row.
    type Row: RowValues<T>;

    /// The rows, in input order.
    fn rows(&self) -> &[Self::Row];
}

/// Records holding exactly one row: the single-row terminals (`insert`, `insert_and_get`, …)
/// exist only for these.
#[diagnostic::on_unimplemented(
    message = "this terminal needs one row, but these records are a batch",
    label = "`.values(..)` was given a batch of rows",
    note = "use a bulk terminal: `bulk_insert`, `bulk_insert_and_get`, `bulk_insert_and_get_with_outcome` or `bulk_execute`"
)]
pub trait SingleRow<T>: Records<T> {}

/// Records holding a batch of rows: the bulk terminals (`bulk_insert`, …) exist only for these.
#[diagnostic::on_unimplemented(
    message = "this terminal needs a batch of rows, but these records are one row",
    label = "`.values(..)` was given one row",
    note = "use a single-row terminal: `insert`, `insert_and_get` or `insert_and_get_with_outcome`, or pass a `Vec` or slice of rows"
)]
pub trait BatchRows<T>: Records<T> {}

impl<V, T> Records<T> for ValuesClause<V, T>
where
    V: RowValues<T>,
{
    type Row = Self;

    fn rows(&self) -> &[Self] {
        std::slice::from_ref(self)
    }
}

impl<V, T> SingleRow<T> for ValuesClause<V, T> where V: RowValues<T> {}

impl<V, T, QId, const STATIC_QUERY_ID: bool> Records<T>
    for BatchInsert<Vec<ValuesClause<V, T>>, T, QId, STATIC_QUERY_ID>
where
    V: RowValues<T>,
{
    type Row = ValuesClause<V, T>;

    fn rows(&self) -> &[Self::Row] {
        &self.values
    }
}

impl<V, T, QId, const STATIC_QUERY_ID: bool> BatchRows<T>
    for BatchInsert<Vec<ValuesClause<V, T>>, T, QId, STATIC_QUERY_ID>
where
    V: RowValues<T>,
{
}

impl<V, T, QId, const N: usize, const STATIC_QUERY_ID: bool> Records<T>
    for BatchInsert<[ValuesClause<V, T>; N], T, QId, STATIC_QUERY_ID>
where
    V: RowValues<T>,
{
    type Row = ValuesClause<V, T>;

    fn rows(&self) -> &[Self::Row] {
        &self.values
    }
}

impl<V, T, QId, const N: usize, const STATIC_QUERY_ID: bool> BatchRows<T>
    for BatchInsert<[ValuesClause<V, T>; N], T, QId, STATIC_QUERY_ID>
where
    V: RowValues<T>,
{
}

/// What [`probe_binds`] finds in the SQL of a row's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    /// Nothing: the row does not supply the column.
    Absent,
    /// Exactly the expected bind parameters, now collected.
    Binds,
    /// Anything else: an SQL expression, a literal, `DEFAULT`.
    Expression,
}

/// [`probe_binds`] for the same fragment (a row's values, or one column's value) of many rows
/// of one type: for a type of [`RowValues::SAME_SHAPE`], once the first row has shown plain
/// binds, the binds of the next rows are collected without rendering and comparing their SQL.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Prober {
    same_shape: bool,
    shown: bool,
}

impl Prober {
    pub(crate) fn new<T, R: RowValues<T>>() -> Self {
        Prober {
            same_shape: R::SAME_SHAPE,
            shown: false,
        }
    }

    /// Like [`probe_binds`], appending to `binds`.
    pub(crate) fn probe<F: QueryFragment<Pg>>(
        &mut self,
        fragment: &F,
        placeholders: &str,
        binds: &mut RawBytesBindCollector<Pg>,
        lookup: &mut <Pg as TypeMetadata>::MetadataLookup,
    ) -> QueryResult<Probe> {
        if self.shown {
            fragment.collect_binds(binds, lookup, &Pg)?;
            return Ok(Probe::Binds);
        }
        let probe = probe_binds(fragment, placeholders, binds, lookup)?;
        self.shown = self.same_shape && probe == Probe::Binds;
        Ok(probe)
    }
}

/// The one bind probe: whether `fragment` (a row's values, or one value) writes exactly the
/// bind parameters `placeholders` (`"$1"`, or `"$1, $2, …"`) and nothing else. Diesel has no
/// typed way to ask whether a value is a plain bind, so its SQL text is compared; the binds are
/// then collected into `binds` with `lookup`.
pub(crate) fn probe_binds<F: QueryFragment<Pg>>(
    fragment: &F,
    placeholders: &str,
    binds: &mut RawBytesBindCollector<Pg>,
    lookup: &mut <Pg as TypeMetadata>::MetadataLookup,
) -> QueryResult<Probe> {
    let mut builder = <Pg as diesel::backend::Backend>::QueryBuilder::default();
    fragment.to_sql(&mut builder, &Pg)?;
    let sql = builder.finish();
    if sql.is_empty() {
        return Ok(Probe::Absent);
    }
    if sql != placeholders {
        return Ok(Probe::Expression);
    }
    fragment.collect_binds(binds, lookup, &Pg)?;
    Ok(Probe::Binds)
}
