use diesel::prelude::*;
use diesel_upsert::prelude::*;

diesel::table! {
    products (id) {
        id -> Int8,
        sku -> Text,
    }
}

#[derive(Insertable)]
#[diesel(table_name = products)]
struct NewProduct<'a> {
    sku: &'a str,
}

fn main() {
    let conn = &mut PgConnection::establish("postgres://localhost/none").unwrap();
    let row = NewProduct { sku: "a" };
    let _: diesel_upsert::Result<Vec<i64>> = diesel::insert_into(products::table)
        .values(&row)
        .on_conflict_do(products::sku, ConflictAction::Update)
        .bulk_insert(conn);
}
