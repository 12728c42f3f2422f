//! The insertable newtype: [`HstoreMap`].

use super::Hstore;
use diesel::deserialize::{self, FromSql};
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, Output, ToSql};
use diesel::{AsExpression, FromSqlRow};
use std::collections::{BTreeMap, HashMap};
use std::ops::{Deref, DerefMut};

// The insertable newtype

/// An hstore value that `Insertable` structs can hold: a `BTreeMap<String, Option<String>>`
/// that binds to `Hstore` and `Nullable<Hstore>` columns.
///
/// Diesel makes a value insertable through `AsExpression`, and Rust's coherence rules keep any
/// crate but Diesel from implementing it for the std maps. Use `HstoreMap` as field type, or
/// keep a map field and convert it with `#[diesel(serialize_as = HstoreMap)]` (HashMap and
/// BTreeMap convert with `From`). It dereferences to the map and loads from the column too.
///
/// ```rust
/// # include!("../doctest_setup.rs");
/// use diesel_upsert::HstoreMap;
/// use std::collections::HashMap;
///
/// #[derive(Insertable)]
/// #[diesel(table_name = articles)]
/// struct Draft {
///     #[diesel(serialize_as = HstoreMap)]
///     title: HashMap<String, Option<String>>,
///     body: String,
/// }
///
/// # fn main() { run().unwrap() }
/// # fn run() -> diesel::QueryResult<()> {
/// # let conn = &mut establish_connection();
/// let title = HashMap::from([("en".to_owned(), Some("Tea".to_owned()))]);
/// let id: i64 = diesel::insert_into(articles::table)
///     .values(Draft { title, body: "green".into() })
///     .returning(articles::id)
///     .get_result(conn)?;
///
/// let loaded: HstoreMap = articles::table
///     .find(id)
///     .select(articles::title.assume_not_null())
///     .get_result(conn)?;
/// assert_eq!(loaded.get("en"), Some(&Some("Tea".to_owned())));
/// # Ok(())
/// # }
/// ```
///
/// With the `serde` feature it serializes as the map itself (`{"en": "Tea", "de": null}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, AsExpression, FromSqlRow)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
#[diesel(sql_type = Hstore)]
pub struct HstoreMap(pub BTreeMap<String, Option<String>>);

impl HstoreMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// The map inside.
    pub fn into_inner(self) -> BTreeMap<String, Option<String>> {
        self.0
    }
}

impl ToSql<Hstore, Pg> for HstoreMap {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        ToSql::<Hstore, Pg>::to_sql(&self.0, out)
    }
}

impl FromSql<Hstore, Pg> for HstoreMap {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        FromSql::<Hstore, Pg>::from_sql(value).map(HstoreMap)
    }
}

impl Deref for HstoreMap {
    type Target = BTreeMap<String, Option<String>>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for HstoreMap {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl From<BTreeMap<String, Option<String>>> for HstoreMap {
    fn from(map: BTreeMap<String, Option<String>>) -> Self {
        HstoreMap(map)
    }
}

impl From<HashMap<String, Option<String>>> for HstoreMap {
    fn from(map: HashMap<String, Option<String>>) -> Self {
        HstoreMap(map.into_iter().collect())
    }
}

impl From<HstoreMap> for BTreeMap<String, Option<String>> {
    fn from(map: HstoreMap) -> Self {
        map.0
    }
}

impl From<HstoreMap> for HashMap<String, Option<String>> {
    fn from(map: HstoreMap) -> Self {
        map.0.into_iter().collect()
    }
}

/// `[("en", Some("Tea")), ("de", None)].into_iter().collect::<HstoreMap>()`; keys and values may
/// be `&str`, `String` or anything else that converts into `String`.
impl<K, V> FromIterator<(K, Option<V>)> for HstoreMap
where
    K: Into<String>,
    V: Into<String>,
{
    fn from_iter<I: IntoIterator<Item = (K, Option<V>)>>(pairs: I) -> Self {
        HstoreMap(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.map(Into::into)))
                .collect(),
        )
    }
}

impl<K, V> Extend<(K, Option<V>)> for HstoreMap
where
    K: Into<String>,
    V: Into<String>,
{
    fn extend<I: IntoIterator<Item = (K, Option<V>)>>(&mut self, pairs: I) {
        self.0.extend(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.map(Into::into))),
        );
    }
}

impl IntoIterator for HstoreMap {
    type Item = (String, Option<String>);
    type IntoIter = std::collections::btree_map::IntoIter<String, Option<String>>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a HstoreMap {
    type Item = (&'a String, &'a Option<String>);
    type IntoIter = std::collections::btree_map::Iter<'a, String, Option<String>>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(all(test, feature = "serde"))]
mod serde_tests {
    use super::HstoreMap;

    #[test]
    fn an_hstore_map_serializes_as_the_map_itself_null_values_kept() {
        let map: HstoreMap = [("en", Some("Tea")), ("de", None)].into_iter().collect();
        let json = serde_json::to_string(&map).unwrap();
        assert_eq!(json, r#"{"de":null,"en":"Tea"}"#);
        let back: HstoreMap = serde_json::from_str(&json).unwrap();
        assert_eq!(back, map);
    }
}
