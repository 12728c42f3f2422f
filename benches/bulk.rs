//! Bulk upsert benchmark: the crate's bulk terminals against hand-written Diesel, the naive
//! SELECT-then-write pattern and COPY-staging references that do the same work (one per kind of
//! call: `DO UPDATE` or `DO NOTHING`, rows back or not), on one table, in one run.
//!
//! ```text
//! cargo bench --bench bulk                      # the figures in docs/performance.md
//! cargo bench --bench bulk -- --quick           # a smoke run: small N, small memory run
//! cargo bench --bench bulk -- --n 100000 --reps 5 --skip-rows 0 --memory-rows 0
//! ```
//!
//! Options (after `--`; each also read from the environment variable in brackets):
//!
//! - `--n 10000,100000` (`BULK_N`): input sizes; half of each input's skus exist beforehand.
//! - `--reps 5` (`BULK_REPS`): repetitions; the variants are interleaved within each one.
//! - `--naive-max 10000` (`BULK_NAIVE_MAX`): the largest N the naive pattern runs at; at larger
//!   N its time is extrapolated linearly from the largest measured N (and marked so).
//! - `--chunk 1000` (`BULK_CHUNK`): rows per statement of the hand-written Diesel variant.
//! - `--skip-rows 100000` (`BULK_SKIP_ROWS`): rows of the `skip_unchanged` comparison (0: skip).
//! - `--memory-rows 1000000` (`BULK_MEMORY_ROWS`): rows of the peak-memory run (0: skip).
//! - `--profile` (`BULK_PROFILE=1`): a timing breakdown of the crate's calls at the largest N
//!   (with `BULK_EXPLAIN=1` also their plans and executor times in the server log; with
//!   `BULK_TRACE=1` or `BULK_TRACE=full` every statement event on stderr).
//! - `--variants update,nothing,diesel,naive,copy` (`BULK_VARIANTS`): the variants compared
//!   (`none`: skip the comparison; default: all). Crate: `update`, `nothing`
//!   (`bulk_insert_and_get`), `execute-update`, `execute-nothing` (`bulk_execute`); `diesel`,
//!   `naive`; COPY staging: `copy` (alias `copy-update-returning`: `DO UPDATE … RETURNING`, the
//!   baseline of `update`, `diesel` and `naive`), `copy-update` (`DO UPDATE`, no rows back: of
//!   `execute-update`), `copy-nothing-returning` (`DO NOTHING … RETURNING` plus the kept rows: of
//!   `nothing`), `copy-nothing` (`DO NOTHING`, no rows back: of `execute-nothing`).
//! - `--quick`: `--n 2000 --reps 3 --naive-max 2000 --skip-rows 5000 --memory-rows 50000`.
//!
//! The database is a fresh one per run (see `tests/harness/db.rs`): the server in
//! `DATABASE_URL`, else `postgres://postgres@127.0.0.1:5432/postgres`.

#[path = "../tests/harness/mod.rs"]
mod harness;
#[path = "measure.rs"]
mod measure;

use measure::process_cpu_time;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bigdecimal::BigDecimal;
use chrono::{DateTime, Utc};
use diesel::connection::{Instrumentation, InstrumentationEvent, SimpleConnection};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_upsert::prelude::*;
use diesel_upsert::BulkSummary;

use schema::bulk_bench;
use types::{Attrs, Price, PriceRef, Timestamptz};

type BoxError = Box<dyn StdError + Send + Sync>;

// ---------------------------------------------------------------------------------------------
// Heap accounting for the peak-memory run (only counts while `COUNTING` is set: the timed runs
// pay one relaxed load per allocation).

struct CountingAllocator;

static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn count_alloc(size: usize) {
    if COUNTING.load(Relaxed) {
        let live = LIVE.fetch_add(size, Relaxed) + size;
        PEAK.fetch_max(live, Relaxed);
    }
}

fn count_dealloc(size: usize) {
    if COUNTING.load(Relaxed) {
        LIVE.fetch_sub(size, Relaxed);
    }
}

// SAFETY: every call is forwarded to `System` unchanged; only byte counts are recorded.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc(layout);
        if !ptr.is_null() {
            count_alloc(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc_zeroed(layout);
        if !ptr.is_null() {
            count_alloc(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        count_dealloc(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = System.realloc(ptr, layout, new_size);
        if !new.is_null() {
            count_dealloc(layout.size());
            count_alloc(new_size);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

// ---------------------------------------------------------------------------------------------
// Schema and types.

/// The crate has no hstore SQL type on this branch: the benchmark brings a minimal one (binary
/// codec below), and a binary NUMERIC codec for the `postgres` crate, which has none.
mod types {
    use super::BoxError;
    use bigdecimal::{BigDecimal, ToPrimitive};
    use chrono::{DateTime, Utc};
    use diesel::deserialize::{self, FromSql, FromSqlRow};
    use diesel::expression::AsExpression;
    use diesel::pg::{Pg, PgValue};
    use diesel::serialize::{self, IsNull, Output, ToSql};
    use postgres::types::{to_sql_checked, Type};
    use std::collections::BTreeMap;
    use std::io::Write;

    /// PostgreSQL's `hstore`, looked up by name (the extension's OID differs per database).
    #[derive(diesel::sql_types::SqlType, diesel::query_builder::QueryId, Debug, Clone, Copy)]
    #[diesel(postgres_type(name = "hstore"))]
    pub struct Hstore;

    /// An hstore value.
    #[derive(Debug, Clone, PartialEq, Eq, AsExpression, FromSqlRow)]
    #[diesel(sql_type = Hstore)]
    pub struct Attrs(pub BTreeMap<String, Option<String>>);

    /// hstore's binary format: count, then per pair key length, key, value length (-1: NULL),
    /// value; lengths are big-endian i32.
    fn encode_hstore(
        map: &BTreeMap<String, Option<String>>,
        mut put: impl FnMut(&[u8]),
    ) -> Result<(), BoxError> {
        put(&i32::try_from(map.len())?.to_be_bytes());
        for (key, value) in map {
            put(&i32::try_from(key.len())?.to_be_bytes());
            put(key.as_bytes());
            match value {
                Some(value) => {
                    put(&i32::try_from(value.len())?.to_be_bytes());
                    put(value.as_bytes());
                }
                None => put(&(-1i32).to_be_bytes()),
            }
        }
        Ok(())
    }

    fn take<'a>(raw: &mut &'a [u8], n: usize) -> Result<&'a [u8], BoxError> {
        if raw.len() < n {
            return Err("truncated value".into());
        }
        let (head, tail) = raw.split_at(n);
        *raw = tail;
        Ok(head)
    }

    fn read_i32(raw: &mut &[u8]) -> Result<i32, BoxError> {
        Ok(i32::from_be_bytes(take(raw, 4)?.try_into()?))
    }

    fn read_i16(raw: &mut &[u8]) -> Result<i16, BoxError> {
        Ok(i16::from_be_bytes(take(raw, 2)?.try_into()?))
    }

    fn decode_hstore(mut raw: &[u8]) -> Result<BTreeMap<String, Option<String>>, BoxError> {
        let count = read_i32(&mut raw)?;
        let mut map = BTreeMap::new();
        for _ in 0..count {
            let key_length = usize::try_from(read_i32(&mut raw)?)?;
            let key = std::str::from_utf8(take(&mut raw, key_length)?)?.to_owned();
            let value_length = read_i32(&mut raw)?;
            let value = match usize::try_from(value_length) {
                Ok(n) => Some(std::str::from_utf8(take(&mut raw, n)?)?.to_owned()),
                Err(_) => None,
            };
            map.insert(key, value);
        }
        Ok(map)
    }

    impl ToSql<Hstore, Pg> for Attrs {
        fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
            let mut written = Ok(());
            encode_hstore(&self.0, |bytes| {
                if written.is_ok() {
                    written = out.write_all(bytes);
                }
            })?;
            written?;
            Ok(IsNull::No)
        }
    }

    impl FromSql<Hstore, Pg> for Attrs {
        fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
            decode_hstore(value.as_bytes()).map(Attrs)
        }
    }

    impl postgres::types::ToSql for Attrs {
        fn to_sql(
            &self,
            _: &Type,
            out: &mut bytes::BytesMut,
        ) -> Result<postgres::types::IsNull, BoxError> {
            encode_hstore(&self.0, |b| out.extend_from_slice(b))?;
            Ok(postgres::types::IsNull::No)
        }

        fn accepts(ty: &Type) -> bool {
            ty.name() == "hstore"
        }

        to_sql_checked!();
    }

    impl<'a> postgres::types::FromSql<'a> for Attrs {
        fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
            decode_hstore(raw).map(Attrs)
        }

        fn accepts(ty: &Type) -> bool {
            ty.name() == "hstore"
        }
    }

    /// A `BigDecimal` bound as binary NUMERIC through the `postgres` crate.
    #[derive(Debug)]
    pub struct PriceRef<'a>(pub &'a BigDecimal);

    impl postgres::types::ToSql for PriceRef<'_> {
        fn to_sql(
            &self,
            _: &Type,
            out: &mut bytes::BytesMut,
        ) -> Result<postgres::types::IsNull, BoxError> {
            // NUMERIC: ndigits, weight, sign, dscale (i16/u16), then base-10000 digits, most
            // significant first; the value is sum(digit[i] * 10000^(weight - i)).
            let (digits, scale) = self.0.as_bigint_and_scale();
            let mut unscaled = digits.to_i128().ok_or("numeric out of range")?;
            let mut scale = scale;
            if scale < 0 {
                unscaled *= 10i128.pow(u32::try_from(-scale)?);
                scale = 0;
            }
            let fraction_groups = (scale + 3) / 4;
            let mut magnitude =
                unscaled.unsigned_abs() * 10u128.pow(u32::try_from(fraction_groups * 4 - scale)?);
            let mut groups = Vec::new(); // least significant first
            while magnitude > 0 {
                groups.push((magnitude % 10_000) as i16);
                magnitude /= 10_000;
            }
            while (groups.len() as i64) < fraction_groups {
                groups.push(0);
            }
            let mut weight = groups.len() as i64 - fraction_groups - 1;
            while groups.last() == Some(&0) {
                groups.pop();
                weight -= 1;
            }
            let trailing = groups.iter().take_while(|d| **d == 0).count();
            groups.drain(..trailing);
            if groups.is_empty() {
                weight = 0;
            }
            out.extend_from_slice(&i16::try_from(groups.len())?.to_be_bytes());
            out.extend_from_slice(&i16::try_from(weight)?.to_be_bytes());
            let sign: u16 = if unscaled < 0 { 0x4000 } else { 0 };
            out.extend_from_slice(&sign.to_be_bytes());
            out.extend_from_slice(&u16::try_from(scale)?.to_be_bytes());
            for digit in groups.iter().rev() {
                out.extend_from_slice(&digit.to_be_bytes());
            }
            Ok(postgres::types::IsNull::No)
        }

        fn accepts(ty: &Type) -> bool {
            *ty == Type::NUMERIC
        }

        to_sql_checked!();
    }

    /// A binary NUMERIC read through the `postgres` crate.
    #[derive(Debug)]
    pub struct Price(pub BigDecimal);

    impl<'a> postgres::types::FromSql<'a> for Price {
        fn from_sql(_: &Type, mut raw: &'a [u8]) -> Result<Self, BoxError> {
            let ndigits = read_i16(&mut raw)?;
            let weight = read_i16(&mut raw)?;
            let sign = read_i16(&mut raw)? as u16;
            let dscale = read_i16(&mut raw)? as u16;
            if sign == 0xC000 {
                return Err("NaN".into());
            }
            let mut acc: i128 = 0;
            for _ in 0..ndigits {
                acc = acc * 10_000 + i128::from(read_i16(&mut raw)?);
            }
            let exponent = 4 * (i64::from(weight) - i64::from(ndigits) + 1) + i64::from(dscale);
            let unscaled = if exponent >= 0 {
                acc * 10i128.pow(u32::try_from(exponent)?)
            } else {
                acc / 10i128.pow(u32::try_from(-exponent)?)
            };
            let unscaled = if sign == 0x4000 { -unscaled } else { unscaled };
            Ok(Price(BigDecimal::new(unscaled.into(), i64::from(dscale))))
        }

        fn accepts(ty: &Type) -> bool {
            *ty == Type::NUMERIC
        }
    }

    /// A binary TIMESTAMPTZ read through the `postgres` crate (built without its chrono feature).
    #[derive(Debug)]
    pub struct Timestamptz(pub DateTime<Utc>);

    impl<'a> postgres::types::FromSql<'a> for Timestamptz {
        fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
            // Microseconds since 2000-01-01 00:00 UTC.
            let micros = i64::from_be_bytes(raw.try_into()?);
            DateTime::from_timestamp_micros(946_684_800_000_000 + micros)
                .map(Timestamptz)
                .ok_or_else(|| "timestamp out of range".into())
        }

        fn accepts(ty: &Type) -> bool {
            *ty == Type::TIMESTAMPTZ
        }
    }
}

mod schema {
    diesel::table! {
        use diesel::sql_types::*;
        use crate::types::Hstore;

        /// Created by the benchmark (see `CREATE_TABLE`).
        bulk_bench (id) {
            id -> BigInt,
            sku -> Nullable<Text>,
            name -> Text,
            qty -> Integer,
            price -> Numeric,
            attrs -> Nullable<Hstore>,
            updated_at -> Timestamptz,
        }
    }
}

const CREATE_TABLE: &str = "DROP TABLE IF EXISTS bulk_bench; \
    CREATE TABLE bulk_bench (id bigserial primary key, sku text unique, name text not null, \
    qty int not null, price numeric(12,2) not null, attrs hstore null, \
    updated_at timestamptz not null default now())";

/// One input row. `attrs: None` is bound as NULL (not left to the default), so every row of a
/// call supplies the same columns, as the crate requires.
#[derive(Insertable, Debug, Clone)]
#[diesel(table_name = bulk_bench, treat_none_as_default_value = false)]
struct NewRow {
    sku: String,
    name: String,
    qty: i32,
    price: BigDecimal,
    attrs: Option<Attrs>,
}

/// A full row, as every variant returns it.
#[derive(Queryable, Selectable, Debug, Clone, PartialEq)]
#[diesel(table_name = bulk_bench, check_for_backend(diesel::pg::Pg))]
struct Row {
    id: i64,
    sku: Option<String>,
    name: String,
    qty: i32,
    price: BigDecimal,
    attrs: Option<Attrs>,
    updated_at: DateTime<Utc>,
}

// ---------------------------------------------------------------------------------------------
// Data: row `i` in revision `rev` (0: what the table holds beforehand, 1: the input). The same
// formulas exist in SQL (`generated_sql`) to seed the table and to compute expected states.

fn new_row(i: u64, rev: u64) -> NewRow {
    const COLORS: [&str; 3] = ["red", "green", "blue"];
    let attrs = (i % 3 != 0).then(|| {
        Attrs(BTreeMap::from([
            (
                "color".to_owned(),
                Some(COLORS[((i + rev) % 3) as usize].to_owned()),
            ),
            ("rev".to_owned(), Some(rev.to_string())),
        ]))
    });
    NewRow {
        sku: format!("SKU-{i:09}"),
        name: format!("item {i} rev {rev}"),
        qty: ((i * 7 + rev * 13) % 1000) as i32,
        price: BigDecimal::new((((i * 37 + rev * 101) % 1_000_000) as i64).into(), 2),
        attrs,
    }
}

fn generated_sql(series: &str, rev: &str) -> String {
    format!(
        "SELECT 'SKU-' || lpad(i::text, 9, '0') AS sku, 'item ' || i || ' rev ' || r AS name, \
         ((i * 7 + r * 13) % 1000)::int AS qty, \
         (((i * 37 + r * 101) % 1000000) / 100.0)::numeric(12,2) AS price, \
         CASE WHEN i % 3 = 0 THEN NULL ELSE hstore(ARRAY['color', 'rev'], \
           ARRAY[(ARRAY['red', 'green', 'blue'])[((i + r) % 3) + 1], r::text]) END AS attrs \
         FROM {series} AS i, LATERAL (SELECT ({rev})::bigint AS r) AS rr"
    )
}

/// The input: rows 0..n in revision 1, in a fixed pseudo-random order (not key order).
fn input_rows(n: u64) -> Vec<NewRow> {
    let mut rows = Vec::with_capacity(n as usize);
    rows.extend((0..n).map(|i| new_row(i, 1)));
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in (1..rows.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        rows.swap(i, (state % (i as u64 + 1)) as usize);
    }
    rows
}

fn sku_index(sku: &str) -> u64 {
    sku.trim_start_matches("SKU-")
        .parse()
        .expect("a generated sku")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seed {
    /// The even rows 0, 2, 4, … < n in revision 0: half of the input's skus exist.
    HalfOld(u64),
    /// Every input row, identical to the input (revision 1).
    AllNew(u64),
}

/// Empties and re-seeds the table, then VACUUM ANALYZE and CHECKPOINT, so every timed run
/// starts from the same state (no dirty buffers of the previous run to write back).
fn reset(conn: &mut PgConnection, seed: Seed) {
    let rows = match seed {
        Seed::HalfOld(n) => generated_sql(&format!("generate_series(0::bigint, {n} - 1, 2)"), "0"),
        Seed::AllNew(n) => generated_sql(&format!("generate_series(0::bigint, {n} - 1)"), "1"),
    };
    conn.batch_execute(&format!(
        "TRUNCATE bulk_bench RESTART IDENTITY; \
         INSERT INTO bulk_bench (sku, name, qty, price, attrs) {rows}"
    ))
    .expect("seeding bulk_bench");
    conn.batch_execute("VACUUM ANALYZE bulk_bench")
        .expect("vacuum");
    conn.batch_execute("CHECKPOINT").expect("checkpoint");
}

/// Row count and an md5 over every value but `id` and `updated_at`, in sku order.
fn checksum_sql(relation: &str) -> String {
    format!(
        "SELECT count(*)::bigint, coalesce(md5(string_agg(concat_ws('|', sku, name, qty, price, \
         coalesce(attrs::text, '-')), ',' ORDER BY sku)), '') FROM ({relation}) AS s"
    )
}

fn checksum(client: &mut postgres::Client, relation: &str) -> (i64, String) {
    let row = client
        .query_one(&checksum_sql(relation), &[])
        .expect("checksum");
    (row.get(0), row.get(1))
}

fn table_checksum(client: &mut postgres::Client) -> (i64, String) {
    checksum(
        client,
        "SELECT sku, name, qty, price, attrs FROM bulk_bench",
    )
}

// ---------------------------------------------------------------------------------------------
// The variants.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    CrateUpdate,
    CrateNothing,
    ExecuteUpdate,
    ExecuteNothing,
    DieselChunks,
    Naive,
    /// COPY staging, `DO UPDATE … RETURNING` the rows (the reference of the earlier runs).
    CopyUpdateReturning,
    /// COPY staging, `DO UPDATE`, no rows back.
    CopyUpdate,
    /// COPY staging, `DO NOTHING … RETURNING` the inserted rows plus the rows kept in place.
    CopyNothingReturning,
    /// COPY staging, `DO NOTHING`, no rows back.
    CopyNothing,
}

const VARIANTS: [Variant; 10] = [
    Variant::CrateUpdate,
    Variant::CrateNothing,
    Variant::ExecuteUpdate,
    Variant::ExecuteNothing,
    Variant::DieselChunks,
    Variant::Naive,
    Variant::CopyUpdateReturning,
    Variant::CopyUpdate,
    Variant::CopyNothingReturning,
    Variant::CopyNothing,
];

impl Variant {
    fn label(self, chunk: usize) -> String {
        match self {
            Variant::CrateUpdate => "crate `Update` + `bulk_insert_and_get`".into(),
            Variant::CrateNothing => "crate `Nothing` + `bulk_insert_and_get`".into(),
            Variant::ExecuteUpdate => "crate `Update` + `bulk_execute`".into(),
            Variant::ExecuteNothing => "crate `Nothing` + `bulk_execute`".into(),
            Variant::DieselChunks => {
                format!("hand-written Diesel `on_conflict().do_update()`, {chunk}-row chunks")
            }
            Variant::Naive => "naive SELECT … FOR UPDATE, then UPDATE or INSERT, per row".into(),
            Variant::CopyUpdateReturning => {
                "COPY (binary) to TEMP table + INSERT … SELECT … ON CONFLICT DO UPDATE … RETURNING"
                    .into()
            }
            Variant::CopyUpdate => {
                "COPY (binary) to TEMP table + INSERT … SELECT … ON CONFLICT DO UPDATE".into()
            }
            Variant::CopyNothingReturning => {
                "COPY (binary) to TEMP table + INSERT … SELECT … ON CONFLICT DO NOTHING … RETURNING, + kept rows"
                    .into()
            }
            Variant::CopyNothing => {
                "COPY (binary) to TEMP table + INSERT … SELECT … ON CONFLICT DO NOTHING".into()
            }
        }
    }

    /// The `--variants` name.
    fn name(self) -> &'static str {
        match self {
            Variant::CrateUpdate => "update",
            Variant::CrateNothing => "nothing",
            Variant::ExecuteUpdate => "execute-update",
            Variant::ExecuteNothing => "execute-nothing",
            Variant::DieselChunks => "diesel",
            Variant::Naive => "naive",
            Variant::CopyUpdateReturning => "copy",
            Variant::CopyUpdate => "copy-update",
            Variant::CopyNothingReturning => "copy-nothing-returning",
            Variant::CopyNothing => "copy-nothing",
        }
    }

    fn from_name(name: &str) -> Option<Variant> {
        if name == "copy-update-returning" {
            return Some(Variant::CopyUpdateReturning);
        }
        VARIANTS.iter().copied().find(|v| v.name() == name)
    }

    /// Whether this is a COPY-staging reference (through the `postgres` crate).
    fn is_copy(self) -> bool {
        matches!(
            self,
            Variant::CopyUpdateReturning
                | Variant::CopyUpdate
                | Variant::CopyNothingReturning
                | Variant::CopyNothing
        )
    }

    /// The COPY-staging reference that does the same work: the same conflict action, and rows
    /// back (one per input row) or not.
    fn baseline(self) -> Variant {
        match self {
            Variant::CrateUpdate | Variant::DieselChunks | Variant::Naive => {
                Variant::CopyUpdateReturning
            }
            Variant::CrateNothing => Variant::CopyNothingReturning,
            Variant::ExecuteUpdate => Variant::CopyUpdate,
            Variant::ExecuteNothing => Variant::CopyNothing,
            copy => copy,
        }
    }

    /// Whether existing rows end up with the input's values.
    fn updates(self) -> bool {
        !matches!(
            self,
            Variant::CrateNothing
                | Variant::ExecuteNothing
                | Variant::CopyNothingReturning
                | Variant::CopyNothing
        )
    }

    /// Whether the result is one row per input row, in input order.
    fn in_input_order(self) -> bool {
        matches!(
            self,
            Variant::CrateUpdate | Variant::CrateNothing | Variant::Naive
        )
    }
}

fn crate_update(conn: &mut PgConnection, input: &[NewRow]) -> Vec<Row> {
    diesel::insert_into(bulk_bench::table)
        .values(input)
        .on_conflict_do(bulk_bench::sku, ConflictAction::Update)
        .bulk_insert_and_get::<Row, _>(conn)
        .expect("crate Update")
}

fn crate_nothing(conn: &mut PgConnection, input: &[NewRow]) -> Vec<Row> {
    diesel::insert_into(bulk_bench::table)
        .values(input)
        .on_conflict_do(bulk_bench::sku, ConflictAction::Nothing)
        .bulk_insert_and_get::<Row, _>(conn)
        .expect("crate Nothing")
}

fn crate_execute(conn: &mut PgConnection, input: &[NewRow], action: ConflictAction) -> BulkSummary {
    diesel::insert_into(bulk_bench::table)
        .values(input)
        .on_conflict_do(bulk_bench::sku, action)
        .bulk_execute(conn)
        .expect("crate bulk_execute")
}

fn diesel_chunks(conn: &mut PgConnection, input: &[NewRow], chunk: usize) -> Vec<Row> {
    use schema::bulk_bench::dsl::*;
    conn.transaction(|conn| {
        let mut out = Vec::with_capacity(input.len());
        for rows in input.chunks(chunk) {
            out.extend(
                diesel::insert_into(bulk_bench)
                    .values(rows)
                    .on_conflict(sku)
                    .do_update()
                    .set((
                        name.eq(excluded(name)),
                        qty.eq(excluded(qty)),
                        price.eq(excluded(price)),
                        attrs.eq(excluded(attrs)),
                    ))
                    .returning(Row::as_returning())
                    .get_results(conn)?,
            );
        }
        QueryResult::Ok(out)
    })
    .expect("hand-written Diesel")
}

fn naive(conn: &mut PgConnection, input: &[NewRow]) -> Vec<Row> {
    use schema::bulk_bench::dsl::*;
    conn.transaction(|conn| {
        input
            .iter()
            .map(|row| {
                let existing: Option<Row> = bulk_bench
                    .filter(sku.eq(&row.sku))
                    .select(Row::as_select())
                    .for_update()
                    .first(conn)
                    .optional()?;
                match existing {
                    Some(existing) => diesel::update(bulk_bench.find(existing.id))
                        .set((
                            name.eq(&row.name),
                            qty.eq(row.qty),
                            price.eq(&row.price),
                            attrs.eq(&row.attrs),
                        ))
                        .returning(Row::as_returning())
                        .get_result(conn),
                    None => diesel::insert_into(bulk_bench)
                        .values(row)
                        .returning(Row::as_returning())
                        .get_result(conn),
                }
            })
            .collect::<QueryResult<Vec<Row>>>()
    })
    .expect("naive")
}

/// The `hstore` type of the connected database (its OID differs per database).
fn hstore_type(client: &mut postgres::Client) -> postgres::types::Type {
    client
        .prepare("SELECT NULL::hstore")
        .expect("hstore type")
        .columns()[0]
        .type_()
        .clone()
}

/// What a timed call gave back.
enum Output {
    /// One row per input row (in input order or not: see `Variant::in_input_order`).
    Rows(Vec<Row>),
    /// `bulk_execute`'s counts.
    Summary(BulkSummary),
    /// The rows the `INSERT` of a COPY-staging reference without `RETURNING` reported.
    Affected(u64),
}

const COPY_INSERT: &str = "INSERT INTO bulk_bench (sku, name, qty, price, attrs) \
     SELECT sku, name, qty, price, attrs FROM bulk_staging ON CONFLICT (sku) ";
const COPY_SET: &str = "DO UPDATE SET name = excluded.name, qty = excluded.qty, \
     price = excluded.price, attrs = excluded.attrs";
const COPY_RETURNING: &str = " RETURNING id, sku, name, qty, price, attrs, updated_at";

/// The statement of a COPY-staging reference, after the COPY into `bulk_staging`.
fn copy_statement(variant: Variant) -> String {
    match variant {
        Variant::CopyUpdateReturning => format!("{COPY_INSERT}{COPY_SET}{COPY_RETURNING}"),
        Variant::CopyUpdate => format!("{COPY_INSERT}{COPY_SET}"),
        // The inserted rows, and the rows the conflict kept: the outer query runs on the
        // statement's snapshot, which does not see the CTE's inserts, so its join finds exactly
        // the rows that existed before (no other writer runs meanwhile).
        Variant::CopyNothingReturning => format!(
            "WITH inserted AS ({COPY_INSERT}DO NOTHING{COPY_RETURNING}) \
             SELECT * FROM inserted UNION ALL \
             SELECT b.id, b.sku, b.name, b.qty, b.price, b.attrs, b.updated_at \
             FROM bulk_staging AS s JOIN bulk_bench AS b ON b.sku = s.sku"
        ),
        Variant::CopyNothing => format!("{COPY_INSERT}DO NOTHING"),
        other => panic!("{other:?} is no COPY variant"),
    }
}

fn copy_staging(
    client: &mut postgres::Client,
    hstore: &postgres::types::Type,
    input: &[NewRow],
    variant: Variant,
) -> Output {
    use postgres::binary_copy::BinaryCopyInWriter;
    use postgres::types::Type;
    let statement = copy_statement(variant);
    let rows_back = matches!(
        variant,
        Variant::CopyUpdateReturning | Variant::CopyNothingReturning
    );
    let mut run = || -> Result<Output, postgres::Error> {
        let mut tx = client.transaction()?;
        tx.batch_execute(
            "CREATE TEMP TABLE bulk_staging (sku text, name text, qty int, \
             price numeric(12,2), attrs hstore) ON COMMIT DROP",
        )?;
        let sink = tx.copy_in(
            "COPY bulk_staging (sku, name, qty, price, attrs) FROM STDIN (FORMAT binary)",
        )?;
        let types = [
            Type::TEXT,
            Type::TEXT,
            Type::INT4,
            Type::NUMERIC,
            hstore.clone(),
        ];
        let mut writer = BinaryCopyInWriter::new(sink, &types);
        for row in input {
            writer.write(&[
                &row.sku,
                &row.name,
                &row.qty,
                &PriceRef(&row.price),
                &row.attrs,
            ])?;
        }
        writer.finish()?;
        let out = if rows_back {
            let rows = tx.query(&statement, &[])?;
            Output::Rows(
                rows.iter()
                    .map(|r| Row {
                        id: r.get(0),
                        sku: r.get(1),
                        name: r.get(2),
                        qty: r.get(3),
                        price: r.get::<_, Price>(4).0,
                        attrs: r.get(5),
                        updated_at: r.get::<_, Timestamptz>(6).0,
                    })
                    .collect(),
            )
        } else {
            Output::Affected(tx.execute(&statement, &[])?)
        };
        tx.commit()?;
        Ok(out)
    };
    run().expect("COPY staging")
}

/// Checks, outside timing, what a variant gave back: the rows (see `check_returned`), or counts
/// that add up to the input (existing skus updated or kept, the others inserted).
fn check_output(variant: Variant, input: &[NewRow], output: &Output) {
    let n = input.len();
    let existing = input.iter().filter(|r| sku_index(&r.sku) % 2 == 0).count();
    match output {
        Output::Rows(rows) => check_returned(variant, input, rows),
        Output::Summary(summary) => {
            let expected = if variant.updates() {
                BulkSummary {
                    inserted: n - existing,
                    updated: existing,
                    unchanged: 0,
                }
            } else {
                BulkSummary {
                    inserted: n - existing,
                    updated: 0,
                    unchanged: existing,
                }
            };
            assert_eq!(*summary, expected, "{variant:?}: counts");
        }
        Output::Affected(affected) => {
            let expected = if variant.updates() { n } else { n - existing };
            assert_eq!(*affected, expected as u64, "{variant:?}: rows affected");
        }
    }
}

/// Checks, outside timing, that a variant returned one row per input row with the values the
/// table should now hold.
fn check_returned(variant: Variant, input: &[NewRow], returned: &[Row]) {
    assert_eq!(
        returned.len(),
        input.len(),
        "{variant:?}: one row per input"
    );
    let expected_name = |sku: &str| {
        let i = sku_index(sku);
        let rev = if variant.updates() || i % 2 == 1 {
            1
        } else {
            0
        };
        format!("item {i} rev {rev}")
    };
    if variant.in_input_order() {
        for (row, returned) in input.iter().zip(returned) {
            assert_eq!(
                returned.sku.as_deref(),
                Some(row.sku.as_str()),
                "{variant:?}"
            );
            assert_eq!(returned.name, expected_name(&row.sku), "{variant:?}");
        }
    } else {
        let mut skus: Vec<&str> = returned
            .iter()
            .map(|r| r.sku.as_deref().expect("sku"))
            .collect();
        skus.sort_unstable();
        let mut expected: Vec<&str> = input.iter().map(|r| r.sku.as_str()).collect();
        expected.sort_unstable();
        assert_eq!(skus, expected, "{variant:?}: the input's skus");
        for r in returned {
            assert_eq!(
                r.name,
                expected_name(r.sku.as_deref().unwrap()),
                "{variant:?}"
            );
        }
    }
    let mut ids: Vec<i64> = returned.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), input.len(), "{variant:?}: distinct rows");
}

/// What a Diesel connection left on the server: prepared statements and backend memory.
#[derive(Debug, Clone, Copy, Default)]
struct Leftovers {
    prepared: i64,
    backend_bytes: i64,
}

fn leftovers(conn: &mut PgConnection) -> Leftovers {
    #[derive(QueryableByName)]
    struct Counts {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        prepared: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        backend_bytes: i64,
    }
    let c: Counts = diesel::sql_query(
        "SELECT (SELECT count(*) FROM pg_prepared_statements)::bigint AS prepared, \
         (SELECT sum(total_bytes) FROM pg_backend_memory_contexts)::bigint AS backend_bytes",
    )
    .get_result(conn)
    .expect("leftovers");
    Leftovers {
        prepared: c.prepared,
        backend_bytes: c.backend_bytes,
    }
}

struct Sample {
    time: Duration,
    cpu: Cpu,
    leftovers: Option<Leftovers>,
}

/// CPU time of every thread of process `pid` so far (`/proc/<pid>/task/*/schedstat`), `None`
/// when the process cannot be seen (a server on another machine).
fn cpu_time(pid: u32) -> Option<Duration> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut ns = 0u64;
    for task in tasks.flatten() {
        if let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) {
            ns += stat
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Some(Duration::from_nanos(ns))
}

/// CPU spent by this process (every thread) and by the server backend of the connection.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    client: Duration,
    server: Option<Duration>,
}

struct CpuMeter {
    backend: u32,
    client: Duration,
    server: Option<Duration>,
}

impl CpuMeter {
    fn start(backend: u32) -> CpuMeter {
        CpuMeter {
            backend,
            client: process_cpu_time(),
            server: cpu_time(backend),
        }
    }

    fn stop(&self) -> Cpu {
        Cpu {
            client: process_cpu_time().saturating_sub(self.client),
            server: self
                .server
                .and_then(|start| Some(cpu_time(self.backend)?.saturating_sub(start))),
        }
    }
}

fn backend_pid(conn: &mut PgConnection) -> u32 {
    diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>(
        "pg_backend_pid()",
    ))
    .get_result::<i32>(conn)
    .expect("backend pid") as u32
}

/// Resets the table, runs one variant (only the variant itself is timed), checks what it gave
/// back and the state it left.
fn run_variant(
    variant: Variant,
    input: &[NewRow],
    chunk: usize,
    checker: &mut postgres::Client,
) -> Sample {
    let n = input.len() as u64;
    let mut conn = harness::connection();
    reset(&mut conn, Seed::HalfOld(n));
    let (time, cpu, output, leftovers) = if variant.is_copy() {
        drop(conn);
        let mut client = harness::pg_client();
        let hstore = hstore_type(&mut client);
        let backend: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .expect("backend pid")
            .get(0);
        let meter = CpuMeter::start(backend as u32);
        let start = Instant::now();
        let output = copy_staging(&mut client, &hstore, input, variant);
        (start.elapsed(), meter.stop(), output, None)
    } else {
        // Type lookups (hstore's OID) happen once per connection: do them untimed.
        warm_up(&mut conn);
        let meter = CpuMeter::start(backend_pid(&mut conn));
        let start = Instant::now();
        let output = match variant {
            Variant::CrateUpdate => Output::Rows(crate_update(&mut conn, input)),
            Variant::CrateNothing => Output::Rows(crate_nothing(&mut conn, input)),
            Variant::ExecuteUpdate => {
                Output::Summary(crate_execute(&mut conn, input, ConflictAction::Update))
            }
            Variant::ExecuteNothing => {
                Output::Summary(crate_execute(&mut conn, input, ConflictAction::Nothing))
            }
            Variant::DieselChunks => Output::Rows(diesel_chunks(&mut conn, input, chunk)),
            Variant::Naive => Output::Rows(naive(&mut conn, input)),
            copy => unreachable!("{copy:?}"),
        };
        let time = start.elapsed();
        let cpu = meter.stop();
        (time, cpu, output, Some(leftovers(&mut conn)))
    };
    check_output(variant, input, &output);
    drop(output);
    let state = table_checksum(checker);
    let expected = expected_state(checker, n, variant.updates());
    assert_eq!(state, expected, "{variant:?}: final table state");
    Sample {
        time,
        cpu,
        leftovers,
    }
}

/// Binds an hstore once, so that Diesel looks up its OID (cached per connection) before a timed
/// call rather than inside it.
fn warm_up(conn: &mut PgConnection) {
    use diesel::sql_types::{Bool, Nullable};
    diesel::select(
        diesel::dsl::sql::<Bool>("")
            .bind::<Nullable<types::Hstore>, _>(Some(Attrs(BTreeMap::new())))
            .sql(" IS NULL"),
    )
    .get_result::<bool>(conn)
    .expect("hstore lookup");
}

fn expected_state(client: &mut postgres::Client, n: u64, updates: bool) -> (i64, String) {
    let rev = if updates {
        "1"
    } else {
        "CASE WHEN i % 2 = 0 THEN 0 ELSE 1 END"
    };
    checksum(
        client,
        &generated_sql(&format!("generate_series(0::bigint, {n} - 1)"), rev),
    )
}

// ---------------------------------------------------------------------------------------------
// Statistics and printing.

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

fn thousands(value: f64) -> String {
    let v = value.round() as i64;
    let digits = v.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    if v < 0 {
        format!("-{out}")
    } else {
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Options.

#[derive(Debug, Clone)]
struct Options {
    sizes: Vec<u64>,
    reps: usize,
    naive_max: u64,
    chunk: usize,
    skip_rows: u64,
    memory_rows: u64,
    profile: bool,
    variants: Vec<Variant>,
}

impl Options {
    fn parse() -> Options {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let mut o = Options {
            sizes: vec![10_000, 100_000],
            reps: 5,
            naive_max: 10_000,
            chunk: 1000,
            skip_rows: 100_000,
            memory_rows: 1_000_000,
            profile: env("BULK_PROFILE").is_some_and(|v| v != "0"),
            variants: VARIANTS.to_vec(),
        };
        let mut args: Vec<String> = std::env::args().skip(1).collect();
        if args.iter().any(|a| a == "--quick") {
            o.sizes = vec![2000];
            o.reps = 3;
            o.naive_max = 2000;
            o.skip_rows = 5000;
            o.memory_rows = 50_000;
        }
        let mut set = |key: &str, value: &str| {
            let number = || -> u64 {
                value
                    .replace('_', "")
                    .parse()
                    .unwrap_or_else(|_| panic!("{key}: not a number: {value}"))
            };
            match key {
                "n" => {
                    o.sizes = value
                        .split(',')
                        .map(|s| s.trim().replace('_', "").parse().expect("--n: numbers"))
                        .collect()
                }
                "reps" => o.reps = number() as usize,
                "naive-max" => o.naive_max = number(),
                "chunk" => o.chunk = number() as usize,
                "skip-rows" => o.skip_rows = number(),
                "memory-rows" => o.memory_rows = number(),
                "variants" => {
                    o.variants = value
                        .split(',')
                        .filter(|v| !v.is_empty() && *v != "none")
                        .map(|v| {
                            Variant::from_name(v.trim()).unwrap_or_else(|| {
                                panic!("--variants: unknown variant {v} (known: {})", {
                                    let names: Vec<&str> =
                                        VARIANTS.iter().map(|v| v.name()).collect();
                                    names.join(", ")
                                })
                            })
                        })
                        .collect()
                }
                _ => panic!("unknown option --{key}"),
            }
        };
        for (key, var) in [
            ("n", "BULK_N"),
            ("reps", "BULK_REPS"),
            ("naive-max", "BULK_NAIVE_MAX"),
            ("chunk", "BULK_CHUNK"),
            ("skip-rows", "BULK_SKIP_ROWS"),
            ("memory-rows", "BULK_MEMORY_ROWS"),
            ("variants", "BULK_VARIANTS"),
        ] {
            if let Some(value) = env(var) {
                set(key, &value);
            }
        }
        args.retain(|a| a != "--bench" && a != "--quick");
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            if arg == "--profile" {
                o.profile = true;
                i += 1;
                continue;
            }
            let key = arg
                .strip_prefix("--")
                .unwrap_or_else(|| panic!("unexpected argument {arg}"));
            if let Some((key, value)) = key.split_once('=') {
                set(key, value);
                i += 1;
            } else {
                let value = args
                    .get(i + 1)
                    .unwrap_or_else(|| panic!("--{key} needs a value"));
                set(key, value);
                i += 2;
            }
        }
        assert!(o.reps >= 1, "--reps must be at least 1");
        assert!(o.chunk >= 1, "--chunk must be at least 1");
        o
    }
}

// ---------------------------------------------------------------------------------------------
// Main comparison.

fn comparison(o: &Options, checker: &mut postgres::Client, report: &mut String) {
    let mut naive_rate: Option<(u64, f64)> = None;
    for &n in &o.sizes {
        let input = input_rows(n);
        let variants: Vec<Variant> = VARIANTS
            .iter()
            .copied()
            .filter(|v| o.variants.contains(v))
            .filter(|v| *v != Variant::Naive || n <= o.naive_max)
            .collect();
        if variants.is_empty() {
            continue;
        }
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
        let mut cpus: Vec<Vec<Cpu>> = vec![Vec::new(); VARIANTS.len()];
        let mut left: Vec<Option<Leftovers>> = vec![None; VARIANTS.len()];
        for rep in 0..o.reps {
            // Interleaved, and rotated so that no variant always runs first.
            for k in 0..variants.len() {
                let variant = variants[(rep + k) % variants.len()];
                let sample = run_variant(variant, &input, o.chunk, checker);
                let index = VARIANTS.iter().position(|v| *v == variant).unwrap();
                eprintln!("  n={n} rep={rep} {variant:?}: {:.3} s", secs(sample.time));
                times[index].push(secs(sample.time));
                cpus[index].push(sample.cpu);
                left[index] = sample.leftovers.or(left[index]);
            }
        }
        let position = |variant: Variant| VARIANTS.iter().position(|v| *v == variant).unwrap();
        let copy = position(Variant::CopyUpdateReturning);
        let crate_update = position(Variant::CrateUpdate);
        if let Some(i) = VARIANTS.iter().position(|v| *v == Variant::Naive) {
            if !times[i].is_empty() {
                naive_rate = Some((n, n as f64 / median(&times[i])));
            }
        }

        writeln!(
            report,
            "\n#### N = {} ({} existing, {} new)\n",
            thousands(n as f64),
            thousands((n / 2 + n % 2) as f64),
            thousands((n / 2) as f64)
        )
        .unwrap();
        writeln!(
            report,
            "| variant | median s | min – max s | rows/s | its baseline | time ÷ its baseline | time ÷ COPY `DO UPDATE … RETURNING` | time ÷ crate Update | client CPU s | server CPU s |"
        )
        .unwrap();
        writeln!(report, "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|").unwrap();
        for (i, variant) in VARIANTS.iter().enumerate() {
            let label = variant.label(o.chunk);
            if times[i].is_empty() {
                if *variant == Variant::Naive {
                    if let (Some((measured_n, rate)), false, false) = (
                        naive_rate,
                        times[copy].is_empty(),
                        times[crate_update].is_empty(),
                    ) {
                        let t = n as f64 / rate;
                        let copy_t = median(&times[copy]);
                        let crate_t = median(&times[crate_update]);
                        writeln!(
                            report,
                            "| {label} (extrapolated from N = {}) | ≈ {t:.2} | – | ≈ {} | `copy` | ≈ {:.1} | ≈ {:.1} | ≈ {:.1} | – | – |",
                            thousands(measured_n as f64),
                            thousands(rate),
                            t / copy_t,
                            t / copy_t,
                            t / crate_t
                        )
                        .unwrap();
                    }
                }
                continue;
            }
            let med = median(&times[i]);
            let (min, max) = times[i]
                .iter()
                .fold((f64::MAX, 0f64), |(a, b), t| (a.min(*t), b.max(*t)));
            // Ratios per repetition (both measured within it), then their median.
            let per_rep = |other: usize, suffix: &str| -> String {
                if times[other].is_empty() {
                    return "–".into();
                }
                let ratios: Vec<f64> = times[i]
                    .iter()
                    .zip(&times[other])
                    .map(|(a, b)| a / b)
                    .collect();
                format!("{:.2}{suffix}", median(&ratios))
            };
            let client = median(&cpus[i].iter().map(|c| secs(c.client)).collect::<Vec<_>>());
            let server: Vec<f64> = cpus[i].iter().filter_map(|c| c.server.map(secs)).collect();
            let server = if server.is_empty() {
                "–".to_owned()
            } else {
                format!("{:.3}", median(&server))
            };
            let baseline = variant.baseline();
            let (baseline_name, own_ratio) = if baseline == *variant {
                ("(itself)".to_owned(), "–".to_owned())
            } else {
                (
                    format!("`{}`", baseline.name()),
                    per_rep(position(baseline), ""),
                )
            };
            writeln!(
                report,
                "| {label} | {med:.3} | {min:.3} – {max:.3} | {} | {baseline_name} | {own_ratio} | {} | {} | {client:.3} | {server} |",
                thousands(n as f64 / med),
                per_rep(copy, ""),
                per_rep(crate_update, ""),
            )
            .unwrap();
        }
        let mut notes = Vec::new();
        for (i, variant) in VARIANTS.iter().enumerate() {
            if let Some(l) = left[i] {
                notes.push(format!(
                    "{variant:?}: {} prepared statements, {:.1} MiB backend memory",
                    l.prepared,
                    mib(l.backend_bytes as f64)
                ));
            }
        }
        writeln!(
            report,
            "\nLeft on the server by the Diesel connection after one call (last repetition): {}.",
            notes.join("; ")
        )
        .unwrap();
        print!("{report}");
        report.clear();
    }
}

// ---------------------------------------------------------------------------------------------
// skip_unchanged: re-upserting identical rows.

struct Wal {
    bytes: f64,
    records: f64,
    fpi: f64,
}

fn wal_position(client: &mut postgres::Client) -> (String, i64, i64) {
    let row = client
        .query_one(
            "SELECT pg_current_wal_lsn()::text, wal_records, wal_fpi FROM pg_stat_wal",
            &[],
        )
        .expect("wal position");
    (row.get(0), row.get(1), row.get(2))
}

fn wal_since(client: &mut postgres::Client, start: &(String, i64, i64)) -> Wal {
    let row = client
        .query_one(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::float8, \
             wal_records, wal_fpi FROM pg_stat_wal",
            &[&start.0],
        )
        .expect("wal diff");
    Wal {
        bytes: row.get(0),
        records: (row.get::<_, i64>(1) - start.1) as f64,
        fpi: (row.get::<_, i64>(2) - start.2) as f64,
    }
}

fn skip_unchanged(o: &Options, checker: &mut postgres::Client, report: &mut String) {
    let n = o.skip_rows;
    let input = input_rows(n);
    let expected = checksum(
        checker,
        &generated_sql(&format!("generate_series(0::bigint, {n} - 1)"), "1"),
    );
    let mut results: [Vec<(f64, Wal)>; 2] = [Vec::new(), Vec::new()];
    let mut breakdown: [Vec<(Vec<Duration>, Cpu)>; 2] = [Vec::new(), Vec::new()];
    let mut kinds: [Vec<&'static str>; 2] = [Vec::new(), Vec::new()];
    // The timed repetitions, then one untimed run per mode that records what each statement is.
    for rep in 0..=o.reps {
        let capture = rep == o.reps;
        for k in 0..2 {
            let skip = (rep + k) % 2 == 1;
            let mut conn = harness::connection();
            reset(&mut conn, Seed::AllNew(n));
            assert_eq!(table_checksum(checker), expected);
            warm_up(&mut conn);
            conn.batch_execute("SELECT pg_stat_force_next_flush()")
                .expect("flush stats");
            let wal_start = wal_position(checker);
            let meter = CpuMeter::start(backend_pid(&mut conn));
            let log = instrument(&mut conn, capture);
            let start = Instant::now();
            let statement = diesel::insert_into(bulk_bench::table)
                .values(&input[..])
                .on_conflict_do(bulk_bench::sku, ConflictAction::Update);
            let returned: Vec<(Row, Outcome)> = if skip {
                statement
                    .skip_unchanged()
                    .bulk_insert_and_get_with_outcome(&mut conn)
            } else {
                statement.bulk_insert_and_get_with_outcome(&mut conn)
            }
            .expect("re-upsert");
            let time = secs(start.elapsed());
            let cpu = meter.stop();
            // pg_stat_wal is fed by each backend when it goes idle, at most once a second
            // unless asked to flush.
            conn.batch_execute("SELECT pg_stat_force_next_flush()")
                .expect("flush stats");
            let wal = wal_since(checker, &wal_start);
            eprintln!(
                "  skip_unchanged={skip} rep={rep}: {time:.3} s, {:.1} MiB WAL",
                mib(wal.bytes)
            );
            assert_eq!(returned.len(), input.len());
            let want = if skip {
                Outcome::Unchanged
            } else {
                Outcome::Updated
            };
            for ((row, outcome), new) in returned.iter().zip(&input) {
                assert_eq!(row.sku.as_deref(), Some(new.sku.as_str()));
                assert_eq!(*outcome, want);
            }
            assert_eq!(table_checksum(checker), expected);
            let log = log.lock().unwrap();
            if capture {
                kinds[usize::from(skip)] = log.kinds.clone();
            } else {
                results[usize::from(skip)].push((time, wal));
                breakdown[usize::from(skip)].push((log.durations.clone(), cpu));
            }
        }
    }
    // Time in the statements of each kind, CPU: medians over the repetitions.
    let parts = |mode: usize| {
        let of_kind = |kind: &str| {
            median(
                &breakdown[mode]
                    .iter()
                    .map(|(durations, _)| {
                        durations
                            .iter()
                            .zip(&kinds[mode])
                            .filter(|(_, k)| **k == kind)
                            .map(|(d, _)| secs(*d))
                            .sum::<f64>()
                    })
                    .collect::<Vec<_>>(),
            )
        };
        let count = |kind: &str| kinds[mode].iter().filter(|k| **k == kind).count();
        let client = median(
            &breakdown[mode]
                .iter()
                .map(|(_, c)| secs(c.client))
                .collect::<Vec<_>>(),
        );
        let server = median(
            &breakdown[mode]
                .iter()
                .map(|(_, c)| c.server.map_or(f64::NAN, secs))
                .collect::<Vec<_>>(),
        );
        (
            of_kind("upsert"),
            count("upsert"),
            of_kind("read"),
            count("read"),
            client,
            server,
        )
    };
    let summary = |rows: &[(f64, Wal)]| {
        (
            median(&rows.iter().map(|r| r.0).collect::<Vec<_>>()),
            median(&rows.iter().map(|r| r.1.bytes).collect::<Vec<_>>()),
            median(&rows.iter().map(|r| r.1.records).collect::<Vec<_>>()),
            median(&rows.iter().map(|r| r.1.fpi).collect::<Vec<_>>()),
        )
    };
    let plain = summary(&results[0]);
    let skip = summary(&results[1]);
    let time_ratio = median(
        &results[1]
            .iter()
            .zip(&results[0])
            .map(|(s, p)| s.0 / p.0)
            .collect::<Vec<_>>(),
    );
    let wal_ratio = median(
        &results[1]
            .iter()
            .zip(&results[0])
            .map(|(s, p)| s.1.bytes / p.1.bytes)
            .collect::<Vec<_>>(),
    );
    writeln!(
        report,
        "\n#### `skip_unchanged`: {} identical rows re-upserted (`Update`, `bulk_insert_and_get_with_outcome`)\n",
        thousands(n as f64)
    )
    .unwrap();
    writeln!(
        report,
        "| | median s | WAL MiB | WAL records | full-page images | in upsert statements s | in statements reading unchanged rows s | client CPU s | server CPU s |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    .unwrap();
    for (mode, label, s) in [
        (0, "without `skip_unchanged` (every row rewritten)", plain),
        (1, "with `skip_unchanged` (no row rewritten)", skip),
    ] {
        let (upsert, upserts, read, reads, client, server) = parts(mode);
        writeln!(
            report,
            "| {label} | {:.3} | {:.1} | {} | {} | {upsert:.3} ({upserts}) | {} | {client:.3} | {server:.3} |",
            s.0,
            mib(s.1),
            thousands(s.2),
            thousands(s.3),
            if reads == 0 {
                "– (0)".to_owned()
            } else {
                format!("{read:.3} ({reads})")
            }
        )
        .unwrap();
    }
    writeln!(
        report,
        "| ratio with / without (median of per-repetition ratios) | {time_ratio:.2} | {wal_ratio:.2} | | | | | | |"
    )
    .unwrap();
    print!("{report}");
    report.clear();
}

// ---------------------------------------------------------------------------------------------
// Peak memory of a large call, in a child process (its own VmHWM).

fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Input size by formula: struct sizes plus the heap blocks each row owns (String capacities,
/// BigDecimal digits, hstore maps counted as their key/value capacities plus one BTreeMap leaf
/// node of up to 11 pairs: 8-byte parent pointer, two u16, 11 keys and 11 values).
fn input_estimate(input: &[NewRow]) -> usize {
    let leaf = 8 + 4 + 11 * 2 * std::mem::size_of::<String>() + 4;
    let mut bytes = std::mem::size_of_val(input);
    for row in input {
        bytes += row.sku.capacity() + row.name.capacity();
        bytes += row.price.as_bigint_and_exponent().0.bits().div_ceil(64) as usize * 8;
        if let Some(attrs) = &row.attrs {
            bytes += leaf;
            for (k, v) in &attrs.0 {
                bytes += k.capacity() + v.as_ref().map_or(0, String::capacity);
            }
        }
    }
    bytes
}

fn memory_child(url: &str, rows: u64, terminal: &str) {
    let mut conn = PgConnection::establish(url).expect("child connection");
    conn.batch_execute("SET lc_messages TO 'C'").ok();
    reset(&mut conn, Seed::HalfOld(rows));
    warm_up(&mut conn);
    let rss_before = proc_status_kib("VmRSS:") * 1024;
    COUNTING.store(true, Relaxed);
    let input = input_rows(rows);
    let input_heap = LIVE.load(Relaxed);
    let estimate = input_estimate(&input);
    PEAK.store(input_heap, Relaxed);
    let start = Instant::now();
    let mut output_heap = 0;
    let output_len = match terminal {
        "rows" => {
            let rows = crate_update(&mut conn, &input);
            // What the returned rows hold on the heap (the call's own buffers are freed).
            output_heap = LIVE.load(Relaxed).saturating_sub(input_heap);
            rows.len()
        }
        "pks" => diesel::insert_into(bulk_bench::table)
            .values(&input[..])
            .on_conflict_do(bulk_bench::sku, ConflictAction::Update)
            .bulk_insert::<i64, _>(&mut conn)
            .expect("bulk_insert")
            .len(),
        "summary" => {
            let summary = diesel::insert_into(bulk_bench::table)
                .values(&input[..])
                .on_conflict_do(bulk_bench::sku, ConflictAction::Update)
                .bulk_execute(&mut conn)
                .expect("bulk_execute");
            (summary.inserted + summary.updated + summary.unchanged) as usize
        }
        other => panic!("unknown terminal {other}"),
    };
    let time = start.elapsed();
    let peak_heap = PEAK.load(Relaxed);
    let hwm = proc_status_kib("VmHWM:") * 1024;
    assert_eq!(output_len as u64, rows);
    let left = leftovers(&mut conn);
    println!(
        "input_heap={input_heap} estimate={estimate} peak_heap={peak_heap} hwm={hwm} output_heap={output_heap} \
         rss_before={rss_before} secs={:.3} prepared={} backend_bytes={}",
        time.as_secs_f64(),
        left.prepared,
        left.backend_bytes
    );
}

fn memory(o: &Options, report: &mut String) {
    let rows = o.memory_rows;
    writeln!(
        report,
        "\n#### Peak memory: one `Update` call on {} rows (half existing), in a child process\n",
        thousands(rows as f64)
    )
    .unwrap();
    writeln!(
        report,
        "| terminal | input rows (heap) | peak heap in the call | peak heap ÷ input | returned rows (heap) | (peak − returned rows) ÷ input | VmHWM | VmHWM ÷ input | (VmHWM − RSS before input) ÷ input | s | prepared statements left | backend memory |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    .unwrap();
    let mut estimate = 0.0;
    for terminal in ["rows", "pks", "summary"] {
        let out = std::process::Command::new(std::env::current_exe().expect("current exe"))
            .arg("--memory-child")
            .arg(rows.to_string())
            .arg(terminal)
            .env("BULK_CHILD_URL", harness::database_url())
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("memory child");
        assert!(out.status.success(), "memory child failed");
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |name: &str| -> f64 {
            text.split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("child output lacks {name}: {text}"))
        };
        let input = field("input_heap");
        eprintln!(
            "  memory {terminal}: {text} (formula estimate of the input: {:.1} MiB)",
            mib(field("estimate"))
        );
        let label = match terminal {
            "rows" => "`bulk_insert_and_get::<Row>`",
            "pks" => "`bulk_insert::<i64>`",
            _ => "`bulk_execute`",
        };
        writeln!(
            report,
            "| {label} | {:.0} MiB | {:.0} MiB | {:.2} | {} | {:.2} | {:.0} MiB | {:.2} | {:.2} | {:.1} | {} | {:.0} MiB |",
            mib(input),
            mib(field("peak_heap")),
            field("peak_heap") / input,
            if terminal == "rows" {
                format!("{:.0} MiB", mib(field("output_heap")))
            } else {
                "–".to_owned()
            },
            (field("peak_heap") - field("output_heap")) / input,
            mib(field("hwm")),
            field("hwm") / input,
            (field("hwm") - field("rss_before")) / input,
            field("secs"),
            field("prepared"),
            mib(field("backend_bytes")),
        )
        .unwrap();
        estimate = field("estimate");
    }
    writeln!(
        report,
        "\nInput rows: the live heap the input `Vec<NewRow>` added, counted by the bench's \
         allocator; by formula (struct sizes, String capacities, BigDecimal digits, one BTreeMap \
         leaf per hstore map) {:.0} MiB. Peak heap: the highest live heap during the call, input \
         included (libpq's own buffers are not on the Rust heap; VmHWM includes them).",
        mib(estimate)
    )
    .unwrap();
    print!("{report}");
    report.clear();
}

// ---------------------------------------------------------------------------------------------
// Profile: where the crate's time goes.

#[derive(Default)]
struct QueryLog {
    /// Start of the outermost statement under way (Diesel runs type lookups inside one).
    started: Option<Instant>,
    depth: usize,
    in_queries: Duration,
    queries: usize,
    /// Duration of each (outermost) statement, in order.
    durations: Vec<Duration>,
    sql_bytes: Vec<usize>,
    /// What each statement is (filled when capturing SQL).
    kinds: Vec<&'static str>,
    capture_sql: bool,
}

/// Which part of a call a statement is, from its SQL text.
fn statement_kind(sql: &str) -> &'static str {
    if sql.starts_with("SELECT pg_stat") {
        "bench"
    } else if sql.contains("INSERT INTO") {
        "upsert"
    } else if sql.starts_with("WITH") || sql.starts_with("SELECT") {
        "read"
    } else {
        "transaction"
    }
}

fn instrument(conn: &mut PgConnection, capture_sql: bool) -> Arc<Mutex<QueryLog>> {
    let log = Arc::new(Mutex::new(QueryLog {
        capture_sql,
        ..QueryLog::default()
    }));
    let sink = Arc::clone(&log);
    // BULK_TRACE=1: each event, shortened; BULK_TRACE=full: each event with its whole SQL.
    let trace = std::env::var("BULK_TRACE").ok();
    let t0 = Instant::now();
    let instrumentation = move |event: InstrumentationEvent<'_>| {
        if let Some(trace) = &trace {
            let text = format!("{event:?}");
            let end = if trace == "full" {
                text.len()
            } else {
                text.char_indices().nth(100).map_or(text.len(), |(i, _)| i)
            };
            eprintln!("TRACE {:.4} {}", secs(t0.elapsed()), &text[..end]);
        }
        let mut log = sink.lock().unwrap();
        match event {
            InstrumentationEvent::StartQuery { query, .. } => {
                log.depth += 1;
                if log.depth > 1 {
                    return;
                }
                if log.capture_sql {
                    let text = query.to_string();
                    let sql = text.split(" -- binds: ").next().unwrap_or("");
                    log.sql_bytes.push(sql.len());
                    log.kinds.push(statement_kind(sql));
                }
                log.started = Some(Instant::now());
            }
            InstrumentationEvent::FinishQuery { .. } => {
                log.depth = log.depth.saturating_sub(1);
                if log.depth > 0 {
                    return;
                }
                if let Some(start) = log.started.take() {
                    let took = start.elapsed();
                    log.in_queries += took;
                    log.durations.push(took);
                    log.queries += 1;
                }
            }
            _ => {}
        }
    };
    let boxed: Box<dyn Instrumentation> = Box::new(instrumentation);
    conn.set_instrumentation(boxed);
    log
}

/// With `BULK_EXPLAIN=1`, the profiled calls log the plan and executor time of every statement
/// over 20 ms to the server log (auto_explain, loaded for the session; needs a superuser).
fn explain_if_asked(conn: &mut PgConnection) {
    if std::env::var("BULK_EXPLAIN").is_ok_and(|v| v != "0") {
        conn.batch_execute(
            "LOAD 'auto_explain'; SET auto_explain.log_min_duration = 20; \
             SET auto_explain.log_analyze = on; SET auto_explain.log_buffers = on; \
             SET log_min_messages = 'log'",
        )
        .expect("auto_explain");
    }
}

/// One profiled call: wall time, time inside statements, statements, CPU.
type Timing = (Duration, Duration, usize, Cpu);

fn profile(o: &Options, report: &mut String) {
    let n = *o.sizes.iter().max().unwrap_or(&100_000);
    let input = input_rows(n);
    writeln!(
        report,
        "\n#### Profile at N = {} (medians; \"in statements\" is Diesel's StartQuery → FinishQuery: binding, preparing, sending, executing, receiving; \"outside\" is the rest: checks, planning, rendering, loading rows into structs)\n",
        thousands(n as f64)
    )
    .unwrap();
    writeln!(
        report,
        "| call | total s | statements | in statements s | outside s | client CPU s | server CPU s | SQL text per statement (KiB) |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    .unwrap();
    type Call = Box<dyn Fn(&mut PgConnection, &[NewRow]) -> usize>;
    let calls: Vec<(String, Call)> = vec![
        (
            "crate Update, whole input".into(),
            Box::new(|c, i| crate_update(c, i).len()),
        ),
        (
            "crate Nothing, whole input".into(),
            Box::new(|c, i| crate_nothing(c, i).len()),
        ),
        (
            "crate Update, caller chunks of 1 000 in one transaction".into(),
            Box::new(|c, i| caller_chunks(c, i, 1000)),
        ),
        (
            "crate Update, caller chunks of 4 000 in one transaction".into(),
            Box::new(|c, i| caller_chunks(c, i, 4000)),
        ),
        (
            "hand-written Diesel, chunks of 1 000".into(),
            Box::new(|c, i| diesel_chunks(c, i, 1000).len()),
        ),
        (
            "hand-written Diesel, chunks of 13 000".into(),
            Box::new(|c, i| diesel_chunks(c, i, 13_000).len()),
        ),
    ];
    // Timed runs, interleaved and rotated like the comparison; then one untimed run per call
    // that formats each statement to measure its SQL text.
    let mut timings: Vec<Vec<Timing>> = vec![Vec::new(); calls.len()];
    let mut sizes: Vec<Vec<usize>> = vec![Vec::new(); calls.len()];
    for rep in 0..=o.reps {
        let capture = rep == o.reps;
        for k in 0..calls.len() {
            let index = (rep + k) % calls.len();
            let mut conn = harness::connection();
            reset(&mut conn, Seed::HalfOld(n));
            warm_up(&mut conn);
            explain_if_asked(&mut conn);
            let meter = CpuMeter::start(backend_pid(&mut conn));
            let log = instrument(&mut conn, capture);
            let start = Instant::now();
            let rows = calls[index].1(&mut conn, &input);
            let total = start.elapsed();
            let cpu = meter.stop();
            assert_eq!(rows, input.len());
            let log = log.lock().unwrap();
            if capture {
                sizes[index] = log.sql_bytes.clone();
            } else {
                eprintln!(
                    "  profile rep={rep} {}: {:.3} s",
                    calls[index].0,
                    secs(total)
                );
                timings[index].push((total, log.in_queries, log.queries, cpu));
            }
        }
    }
    for (index, (label, _)) in calls.iter().enumerate() {
        let column =
            |f: &dyn Fn(&Timing) -> f64| median(&timings[index].iter().map(f).collect::<Vec<_>>());
        let total = column(&|t| secs(t.0));
        let inside = column(&|t| secs(t.1));
        let outside = column(&|t| secs(t.0.saturating_sub(t.1)));
        let client = column(&|t| secs(t.3.client));
        let server = column(&|t| t.3.server.map_or(f64::NAN, secs));
        let queries = timings[index][0].2;
        let mut big: Vec<usize> = sizes[index].iter().copied().filter(|s| *s > 200).collect();
        big.sort_unstable();
        let size_text = match (big.first(), big.last()) {
            (Some(a), Some(b)) if a != b => {
                format!("{:.0} – {:.0}", *a as f64 / 1024.0, *b as f64 / 1024.0)
            }
            (Some(a), _) => format!("{:.0}", *a as f64 / 1024.0),
            _ => "–".into(),
        };
        writeln!(
            report,
            "| {label} | {total:.3} | {queries} | {inside:.3} | {outside:.3} | {client:.3} | {server:.3} | {size_text} |",
        )
        .unwrap();
    }
    print!("{report}");
    report.clear();
}

/// The crate called on slices of the input inside one transaction (what a cap on rows per
/// statement would do).
fn caller_chunks(conn: &mut PgConnection, input: &[NewRow], chunk: usize) -> usize {
    conn.transaction(|conn| {
        let mut count = 0;
        for rows in input.chunks(chunk) {
            count += crate_update(conn, rows).len();
        }
        QueryResult::Ok(count)
    })
    .unwrap()
}

// ---------------------------------------------------------------------------------------------

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|r| r.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut client = harness::pg_client();
    let version: String = client
        .query_one("SELECT current_setting('server_version')", &[])
        .map(|r| r.get(0))
        .unwrap_or_default();
    let settings: Vec<String> = client
        .query(
            "SELECT name || '=' || setting || coalesce(unit, '') FROM pg_settings \
             WHERE name IN ('shared_buffers', 'synchronous_commit', 'full_page_writes', 'wal_compression') ORDER BY name",
            &[],
        )
        .map(|rows| rows.iter().map(|r| r.get(0)).collect())
        .unwrap_or_default();
    format!(
        "{cpu}, {cores} cores; PostgreSQL {version} on the same machine ({})",
        settings.join(", ")
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--memory-child") {
        let rows = args[i + 1].parse().expect("rows");
        let url = std::env::var("BULK_CHILD_URL").expect("BULK_CHILD_URL");
        memory_child(&url, rows, &args[i + 2]);
        return;
    }
    let o = Options::parse();
    eprintln!("options: {o:?}");
    let mut conn = harness::connection();
    conn.batch_execute(CREATE_TABLE).expect("create bulk_bench");
    drop(conn);
    let mut checker = harness::pg_client();
    let mut report = String::new();
    writeln!(report, "Machine: {}", machine()).unwrap();
    writeln!(
        report,
        "Run: sizes {:?}, {} repetitions (variants interleaved and rotated), medians; ratios are medians of per-repetition ratios.",
        o.sizes, o.reps
    )
    .unwrap();
    print!("{report}");
    report.clear();
    comparison(&o, &mut checker, &mut report);
    if o.skip_rows > 0 {
        skip_unchanged(&o, &mut checker, &mut report);
    }
    if o.memory_rows > 0 {
        memory(&o, &mut report);
    }
    if o.profile {
        profile(&o, &mut report);
    }
}
