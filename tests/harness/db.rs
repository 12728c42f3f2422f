// The test database: finding a server, one fresh migrated database per process, connections.
//
// Mounted as `crate::harness::db` everywhere (tests, examples, doctests); also pulled in with
// `include!`, so no inner attributes and no `mod foo;` declarations here.
//
// Server, in this order:
// 1. `DATABASE_URL` when set (a database on the server to administer from; test databases are
//    created next to it);
// 2. `DIESEL_UPSERT_SERVER_URL` when set, else `postgres://postgres@127.0.0.1:5432/postgres`,
//    when a connection succeeds;
// 3. a throwaway cluster (initdb + pg_ctl from `/usr/lib/postgresql/<ver>/bin` or `PATH`) in
//    `$TMPDIR/diesel-upsert-pg-<uid>`, started on a free port the first time and reused by later
//    processes while it runs. Stop it with `pg_ctl -D $TMPDIR/diesel-upsert-pg-<uid>/data stop`
//    (as the `postgres` user when the tests run as root: PostgreSQL refuses to run as root).
//
// Each process creates its own database `diesel_upsert_test_<pid>_<nanos>`, runs the embedded
// migrations and drops the database when the process exits (`atexit`). Databases left behind by
// processes that died without exiting (killed, aborted) are dropped by the next process when the
// server is local and their pid is gone from `/proc`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

/// The schema of `migrations/`, compiled in.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The server tried when `DATABASE_URL` is not set (overridable with `DIESEL_UPSERT_SERVER_URL`).
pub const DEFAULT_SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Every test database name starts with this, followed by `<pid>_<nanos>`.
pub const TEST_DATABASE_PREFIX: &str = "diesel_upsert_test_";

/// Every table of the test schema, for `TRUNCATE`.
pub const ALL_TABLES: &[&str] = &[
    "products",
    "vendor_products",
    "countries",
    "tasks",
    "memberships",
    "subscriptions",
    "articles",
    "accounts",
    "aliases",
];

/// URL of a database on the PostgreSQL server the tests use (not the test database itself:
/// see [`database_url`]). Found once per process; see the top of this file for the order.
pub fn server_url() -> String {
    static SERVER_URL: OnceLock<String> = OnceLock::new();
    SERVER_URL.get_or_init(find_server).clone()
}

/// URL of this process's test database: created and migrated on first call, dropped at exit.
pub fn database_url() -> &'static str {
    static DATABASE_URL: OnceLock<String> = OnceLock::new();
    DATABASE_URL.get_or_init(create_test_database)
}

/// A new connection to the test database. Error messages are in English (`lc_messages = 'C'`).
pub fn connection() -> PgConnection {
    let url = database_url();
    let mut conn = PgConnection::establish(url)
        .unwrap_or_else(|e| panic!("cannot connect to the test database {url}: {e}"));
    // Superuser-only; the database default set at creation covers other roles.
    let _ = conn.batch_execute("SET lc_messages TO 'C'");
    conn
}

/// [`connection`] inside a transaction that is never committed: nothing it writes is seen by
/// other connections or survives it.
pub fn test_connection() -> PgConnection {
    let mut conn = connection();
    conn.begin_test_transaction()
        .expect("cannot begin the test transaction");
    conn
}

/// An r2d2 pool of up to `max_size` connections to the test database.
pub fn pool(max_size: u32) -> Pool<ConnectionManager<PgConnection>> {
    Pool::builder()
        .max_size(max_size)
        .connection_timeout(Duration::from_secs(30))
        .build(ConnectionManager::<PgConnection>::new(database_url()))
        .expect("cannot build the r2d2 pool for the test database")
}

/// An independent client (rust-postgres, no TLS) on the test database, to check table state
/// without going through Diesel.
pub fn pg_client() -> postgres::Client {
    let url = database_url();
    postgres::Client::connect(url, postgres::NoTls).unwrap_or_else(|e| {
        panic!("cannot connect to the test database {url} with rust-postgres: {e}")
    })
}

/// Empties every table of the test schema and restarts their id sequences. Tests run in parallel
/// on the same database: only call it from a test that owns every table, otherwise delete your own
/// rows (use [`unique_key`] to tell them apart).
pub fn truncate_all(conn: &mut PgConnection) {
    conn.batch_execute(&format!(
        "TRUNCATE {} RESTART IDENTITY",
        ALL_TABLES.join(", ")
    ))
    .expect("cannot truncate the test tables");
}

/// Records the SQL of every statement the connection sends from now on.
pub fn record_sql(conn: &mut PgConnection) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&sent);
    conn.set_instrumentation(move |event: diesel::connection::InstrumentationEvent<'_>| {
        if let diesel::connection::InstrumentationEvent::StartQuery { query, .. } = event {
            sink.lock().unwrap().push(query.to_string());
        }
    });
    sent
}

static UNIQUE_COUNTER: AtomicU64 = AtomicU64::new(1);

/// `"<prefix>-<n>"`, a different `n` on every call in this process: keys for tests that commit
/// rows to tables other tests also use.
pub fn unique_key(prefix: &str) -> String {
    format!("{prefix}-{}", unique_i64())
}

/// A different positive number on every call in this process (shares [`unique_key`]'s counter).
pub fn unique_i64() -> i64 {
    UNIQUE_COUNTER.fetch_add(1, Ordering::Relaxed) as i64
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn find_server() -> String {
    if let Some(url) = env_nonempty("DATABASE_URL") {
        return url;
    }
    let default =
        env_nonempty("DIESEL_UPSERT_SERVER_URL").unwrap_or_else(|| DEFAULT_SERVER_URL.to_owned());
    let default_error = match PgConnection::establish(&default) {
        Ok(_) => return default,
        Err(e) => e.to_string(),
    };
    match start_throwaway_cluster() {
        Ok(Some(url)) => url,
        Ok(None) => panic!(
            "no PostgreSQL server for the tests: DATABASE_URL is not set, {default} does not answer \
             ({}), and no PostgreSQL binaries (initdb, pg_ctl) were found in /usr/lib/postgresql/*/bin \
             or on PATH to start a throwaway one. Install PostgreSQL (Debian/Ubuntu: \
             `apt-get install postgresql postgresql-contrib libpq-dev`) or set DATABASE_URL.",
            default_error.trim()
        ),
        Err(e) => panic!(
            "no PostgreSQL server for the tests: DATABASE_URL is not set, {default} does not answer \
             ({}), and starting a throwaway cluster failed: {e}",
            default_error.trim()
        ),
    }
}

/// (server URL, database name) to drop when the process exits.
static TO_DROP: OnceLock<(String, String)> = OnceLock::new();

fn create_test_database() -> String {
    let server = server_url();
    let mut admin = PgConnection::establish(&server)
        .unwrap_or_else(|e| panic!("cannot connect to the PostgreSQL server at {server}: {e}"));
    if server_is_local(&server) {
        drop_leftover_databases(&mut admin);
    }

    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let name = format!("{TEST_DATABASE_PREFIX}{}_{nanos}", std::process::id());
    admin
        .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&name)))
        .unwrap_or_else(|e| {
            panic!(
                "cannot create the test database {name} on {server} (the role needs CREATEDB): {e}"
            )
        });
    if TO_DROP.set((server.clone(), name.clone())).is_ok() {
        register_drop_at_exit();
    }
    // Stable (English) error messages on every connection, pools included. Superuser-only.
    let _ = admin.batch_execute(&format!(
        "ALTER DATABASE {} SET lc_messages TO 'C'",
        quote_ident(&name)
    ));
    drop(admin);

    let url = url_with_database(&server, &name);
    let mut conn = PgConnection::establish(&url)
        .unwrap_or_else(|e| panic!("cannot connect to the new test database {url}: {e}"));
    conn.run_pending_migrations(MIGRATIONS)
        .unwrap_or_else(|e| panic!("running the migrations on {name} failed: {e}"));
    url
}

extern "C" {
    fn atexit(callback: extern "C" fn()) -> std::os::raw::c_int;
}

extern "C" fn drop_test_database_at_exit() {
    // A panic must not unwind out of an `extern "C"` function.
    let _ = std::panic::catch_unwind(|| {
        if let Some((server, name)) = TO_DROP.get() {
            drop_database(server, name);
        }
    });
}

fn register_drop_at_exit() {
    // SAFETY: `atexit` is the C library's; the callback is a plain `extern "C" fn()` that never
    // unwinds.
    let registered = unsafe { atexit(drop_test_database_at_exit) };
    if registered != 0 {
        eprintln!("warning: atexit failed; the test database will be dropped by a later run");
    }
}

fn drop_database(server: &str, name: &str) {
    let mut admin = match PgConnection::establish(server) {
        Ok(conn) => conn,
        Err(e) => {
            eprintln!("warning: cannot connect to {server} to drop the test database {name}: {e}");
            return;
        }
    };
    let ident = quote_ident(name);
    if admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {ident} WITH (FORCE)"))
        .is_ok()
    {
        return;
    }
    // PostgreSQL before 13 has no `WITH (FORCE)`.
    let result = admin.batch_execute(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = {} AND pid <> pg_backend_pid(); \
         DROP DATABASE IF EXISTS {ident}",
        quote_literal(name)
    ));
    if let Err(e) = result {
        eprintln!("warning: cannot drop the test database {name}: {e}");
    }
}

#[derive(diesel::QueryableByName)]
struct DatabaseName {
    #[diesel(sql_type = diesel::sql_types::Text)]
    datname: String,
}

/// Drops test databases whose creating process is gone. Without `WITH (FORCE)`: a database that
/// still has connections is left alone.
fn drop_leftover_databases(admin: &mut PgConnection) {
    if !Path::new("/proc/self").exists() {
        return; // no way to tell which processes are alive
    }
    let names: Vec<DatabaseName> = match diesel::sql_query(
        "SELECT datname FROM pg_database WHERE left(datname, length($1)) = $1",
    )
    .bind::<diesel::sql_types::Text, _>(TEST_DATABASE_PREFIX)
    .load(admin)
    {
        Ok(names) => names,
        Err(_) => return,
    };
    let own_pid = std::process::id();
    for DatabaseName { datname } in names {
        let pid = datname[TEST_DATABASE_PREFIX.len()..]
            .split('_')
            .next()
            .and_then(|pid| pid.parse::<u32>().ok());
        let Some(pid) = pid else { continue };
        if pid == own_pid || process_alive(pid) {
            continue;
        }
        let _ = admin.batch_execute(&format!(
            "DROP DATABASE IF EXISTS {}",
            quote_ident(&datname)
        ));
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// The same server URL with another database name. Handles `postgres://…/db?params` URLs and
/// libpq `key=value` strings.
fn url_with_database(server: &str, database: &str) -> String {
    match server.find("://") {
        Some(scheme_end) => {
            let (scheme, rest) = server.split_at(scheme_end + 3);
            let query_start = rest.find('?').unwrap_or(rest.len());
            let (before_query, query) = rest.split_at(query_start);
            let authority = before_query.split('/').next().unwrap_or_default();
            format!("{scheme}{authority}/{database}{query}")
        }
        None => format!("{server} dbname={database}"),
    }
}

/// Whether the server runs on this machine (so `/proc/<pid>` says whether a test database's
/// creator is still alive).
fn server_is_local(url: &str) -> bool {
    let host = match url.find("://") {
        Some(scheme_end) => {
            let rest = &url[scheme_end + 3..];
            if let Some(host) = rest
                .split_once('?')
                .and_then(|(_, query)| query.split('&').find_map(|p| p.strip_prefix("host=")))
            {
                host.to_owned()
            } else {
                let authority = rest.split(['/', '?']).next().unwrap_or_default();
                let host_port = authority.rsplit('@').next().unwrap_or_default();
                if let Some(bracketed) = host_port.strip_prefix('[') {
                    bracketed.split(']').next().unwrap_or_default().to_owned()
                } else {
                    host_port.split(':').next().unwrap_or_default().to_owned()
                }
            }
        }
        None => url
            .split_whitespace()
            .find_map(|p| p.strip_prefix("host="))
            .unwrap_or_default()
            .to_owned(),
    };
    let host = host.to_ascii_lowercase();
    host.is_empty()
        || host.starts_with('/')
        || host.starts_with("%2f")
        || ["localhost", "127.0.0.1", "::1"].contains(&host.as_str())
}

// ---------------------------------------------------------------------------------------------
// Throwaway cluster

fn start_throwaway_cluster() -> Result<Option<String>, String> {
    let Some(bindir) = find_pg_bindir() else {
        return Ok(None);
    };
    let uid = current_uid()?;
    // PostgreSQL refuses to run as root: run initdb and pg_ctl as the `postgres` user then.
    let run_as = if uid == 0 {
        Some(service_user()?)
    } else {
        None
    };
    let base = std::env::temp_dir().join(format!("diesel-upsert-pg-{uid}"));
    std::fs::create_dir_all(&base).map_err(|e| format!("cannot create {}: {e}", base.display()))?;
    if let Some(user) = &run_as {
        std::os::unix::fs::chown(&base, Some(user.uid), Some(user.gid))
            .map_err(|e| format!("cannot chown {} to {}: {e}", base.display(), user.name))?;
    }
    let _lock = DirLock::acquire(base.join("lock"))?;
    let data = base.join("data");

    // Already running (started by an earlier process)?
    if let Some(port) = running_port(&data) {
        let url = local_url(port);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if PgConnection::establish(&url).is_ok() {
                return Ok(Some(url));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the throwaway cluster in {} runs (postmaster.pid) but {url} does not answer",
                    data.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    if !data.join("PG_VERSION").exists() {
        if data.exists() {
            // A half-made cluster from an interrupted initdb.
            std::fs::remove_dir_all(&data)
                .map_err(|e| format!("cannot remove {}: {e}", data.display()))?;
        }
        run_pg_tool(
            &bindir.join("initdb"),
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--locale=C".as_ref(),
                "--no-sync".as_ref(),
            ],
            run_as.as_ref(),
        )?;
    }

    let port = free_port()?;
    let options = format!(
        "-c listen_addresses=127.0.0.1 -p {port} -k '{}' -c fsync=off",
        data.display()
    );
    let log = base.join("server.log");
    run_pg_tool(
        &bindir.join("pg_ctl"),
        &[
            "-D".as_ref(),
            data.as_os_str(),
            "-l".as_ref(),
            log.as_os_str(),
            "-w".as_ref(),
            "-t".as_ref(),
            "60".as_ref(),
            "-o".as_ref(),
            options.as_ref(),
            "start".as_ref(),
        ],
        run_as.as_ref(),
    )
    .map_err(|e| format!("{e} (server log: {})", log.display()))?;
    let url = local_url(port);
    PgConnection::establish(&url)
        .map_err(|e| format!("the throwaway cluster started but {url} does not answer: {e}"))?;
    Ok(Some(url))
}

fn local_url(port: u16) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/postgres")
}

/// The newest `/usr/lib/postgresql/<version>/bin`, else the `PATH` entry holding `initdb`.
fn find_pg_bindir() -> Option<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let mut installed: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry
                .file_name()
                .to_str()?
                .split('.')
                .map(|part| part.parse::<u32>().ok())
                .collect::<Option<Vec<u32>>>()?;
            let bin = entry.path().join("bin");
            has_tools(&bin).then_some((version, bin))
        })
        .collect();
    installed.sort();
    if let Some((_, bin)) = installed.pop() {
        return Some(bin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|dir| has_tools(dir))
}

fn current_uid() -> Result<u32, String> {
    let output = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| format!("cannot run `id -u`: {e}"))?;
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .map_err(|e| format!("unexpected output from `id -u`: {e}"))
}

struct ServiceUser {
    name: String,
    uid: u32,
    gid: u32,
}

fn service_user() -> Result<ServiceUser, String> {
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(|e| format!("cannot read /etc/passwd: {e}"))?;
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.len() > 3 && fields[0] == "postgres")
        .and_then(|fields| {
            Some(ServiceUser {
                name: fields[0].to_owned(),
                uid: fields[2].parse().ok()?,
                gid: fields[3].parse().ok()?,
            })
        })
        .ok_or_else(|| {
            "running as root, and there is no `postgres` user to run a throwaway PostgreSQL \
             server as (PostgreSQL refuses to run as root)"
                .to_owned()
        })
}

/// Runs a PostgreSQL tool, as `user` when given (through `runuser`, else `su`).
fn run_pg_tool(
    program: &Path,
    args: &[&std::ffi::OsStr],
    user: Option<&ServiceUser>,
) -> Result<(), String> {
    let mut command = match user {
        None => {
            let mut command = Command::new(program);
            command.args(args);
            command
        }
        Some(user) if find_in_path("runuser").is_some() => {
            let mut command = Command::new("runuser");
            command
                .args(["-u", &user.name, "--"])
                .arg(program)
                .args(args);
            command
        }
        Some(user) => {
            let line = std::iter::once(program.as_os_str())
                .chain(args.iter().copied())
                .map(|arg| shell_quote(&arg.to_string_lossy()))
                .collect::<Vec<_>>()
                .join(" ");
            let mut command = Command::new("su");
            command.args([&user.name, "-s", "/bin/sh", "-c", &line]);
            command
        }
    };
    // The server pg_ctl starts outlives this process: it must not hold our stdout/stderr open.
    let output = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} failed ({}): {}{}",
            program.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn shell_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| format!("cannot find a free TCP port: {e}"))
}

/// The port of the server running on `data`, from its `postmaster.pid` (line 1: pid, line 4: port).
fn running_port(data: &Path) -> Option<u16> {
    let pidfile = std::fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let mut lines = pidfile.lines();
    let pid: u32 = lines.next()?.trim().parse().ok()?;
    let port: u16 = lines.nth(2)?.trim().parse().ok()?;
    process_alive(pid).then_some(port)
}

/// Whether a process with this pid exists (`/proc`, else `kill -0`).
fn process_alive(pid: u32) -> bool {
    if Path::new("/proc/self").exists() {
        return Path::new(&format!("/proc/{pid}")).exists();
    }
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .map(|status| status.success())
        .unwrap_or(false)
}

/// A lock between processes: a directory holding the owner's pid. A lock whose owner is gone is
/// taken over.
struct DirLock(PathBuf);

impl DirLock {
    fn acquire(path: PathBuf) -> Result<DirLock, String> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    let _ = std::fs::write(path.join("pid"), std::process::id().to_string());
                    return Ok(DirLock(path));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if Self::is_stale(&path) {
                        let _ = std::fs::remove_dir_all(&path);
                        continue;
                    }
                }
                Err(e) => return Err(format!("cannot create the lock {}: {e}", path.display())),
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "timed out waiting for the lock {} (remove it if no test runs)",
                    path.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn is_stale(path: &Path) -> bool {
        let owner = std::fs::read_to_string(path.join("pid"))
            .ok()
            .and_then(|pid| pid.trim().parse::<u32>().ok());
        match owner {
            Some(pid) => !process_alive(pid),
            // Just created, pid not written yet; or the owner died in between.
            None => std::fs::metadata(path)
                .and_then(|m| m.modified())
                .map(|modified| modified.elapsed().unwrap_or_default() > Duration::from_secs(10))
                .unwrap_or(false),
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
