//! The database: one diesel code path for PostgreSQL and embedded SQLite.
//!
//! [`DbConnection`] holds a connection to either backend: every query below is written once (see
//! `on_backend!`) and runs on whichever backend `DATABASE_URL` names. diesel is synchronous, so
//! every call runs on Tokio's blocking pool inside a `db` span that is a child of the caller's
//! span.

pub mod schema;

use std::time::Duration;

use chrono::{NaiveDateTime, SubsecRound as _};
use diesel::prelude::*;
use diesel::r2d2::{
    CustomizeConnection, ManageConnection, Pool, PooledConnection, R2D2Connection as _,
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness as _, embed_migrations};

use crate::error::UserError;
use schema::users;

/// The schema history, compiled into the binary and applied at start-up.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// A connection to either backend.
pub enum DbConnection {
    /// `postgres://` URLs: what compose and Kubernetes use.
    Pg(diesel::PgConnection),
    /// `sqlite://` paths: the zero-dependency local default.
    Sqlite(diesel::SqliteConnection),
}

/// Runs `$body` with `$conn` bound to the concrete connection inside a [`DbConnection`]: each
/// query is written once and compiled for both backends.
///
/// This rather than diesel's `MultiConnection`, which renders the SQL text of every query it
/// runs (about 40 allocations per read) before the backend finds its cached statement; a
/// concrete connection finds it by the query's type alone.
macro_rules! on_backend {
    ($db:expr, |$conn:ident| $body:expr) => {
        match $db {
            DbConnection::Pg($conn) => $body,
            DbConnection::Sqlite($conn) => $body,
        }
    };
}

impl DbConnection {
    fn ping(&mut self) -> QueryResult<()> {
        on_backend!(self, |conn| conn.ping())
    }

    fn is_broken(&mut self) -> bool {
        on_backend!(self, |conn| conn.is_broken())
    }
}

/// Which backend a [`Database`] talks to; its name is the `db.system` span attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL.
    Postgres,
    /// SQLite.
    Sqlite,
}

impl Backend {
    /// The semantic-convention `db.system.name` value.
    pub fn system(self) -> &'static str {
        match self {
            Backend::Postgres => "postgresql",
            Backend::Sqlite => "sqlite",
        }
    }
}

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = users)]
pub struct UserRow {
    /// UUID, canonical text form.
    pub id: String,
    /// Lower-cased email.
    pub email: String,
    /// Display name.
    pub name: String,
    /// bcrypt hash; never leaves this crate except through `GetCredential`.
    pub password_hash: String,
    /// Creation time, UTC, microsecond precision (what PostgreSQL keeps).
    pub created_at: NaiveDateTime,
}

impl UserRow {
    /// A new row with a fresh id and the current time.
    pub fn new(email: String, name: String, password_hash: String) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            email,
            name,
            password_hash,
            created_at: chrono::Utc::now().naive_utc().trunc_subsecs(6),
        }
    }
}

/// A pooled connection and when it last proved to work.
struct Tracked {
    conn: DbConnection,
    /// The end of its last successful query or ping; see [`ALIVE_BYPASS_WINDOW`].
    last_worked: std::time::Instant,
}

/// A connection whose last query succeeded this recently is handed out without a ping.
///
/// r2d2 pings (`SELECT 1`) on every checkout by default: under load that is a second round
/// trip to PostgreSQL (or a fresh statement for SQLite) per query. A connection that has just
/// worked is alive; one idle for longer, or whose last query failed (the database went away
/// meanwhile), is still pinged, so a dead connection is replaced before a request gets it.
/// HikariCP does the same (`aliveBypassWindowMs`, 500 ms).
const ALIVE_BYPASS_WINDOW: Duration = Duration::from_millis(500);

/// Opens connections of the backend the URL names.
///
/// Each backend's own `establish`, so that a failure reports the real cause (a wrong password,
/// a refused connection) in the backend's words.
struct Manager {
    backend: Backend,
    url: String,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password.
        f.debug_struct("Manager")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl ManageConnection for Manager {
    type Connection = Tracked;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<Tracked, Self::Error> {
        let connection = match self.backend {
            Backend::Postgres => diesel::PgConnection::establish(&self.url).map(DbConnection::Pg),
            Backend::Sqlite => {
                diesel::SqliteConnection::establish(&self.url).map(DbConnection::Sqlite)
            }
        };
        connection
            .map(|conn| Tracked {
                conn,
                last_worked: std::time::Instant::now(),
            })
            .map_err(diesel::r2d2::Error::ConnectionError)
    }

    fn is_valid(&self, conn: &mut Tracked) -> Result<(), Self::Error> {
        if conn.last_worked.elapsed() < ALIVE_BYPASS_WINDOW {
            return Ok(());
        }
        conn.conn.ping().map_err(diesel::r2d2::Error::QueryError)?;
        conn.last_worked = std::time::Instant::now();
        Ok(())
    }

    fn has_broken(&self, conn: &mut Tracked) -> bool {
        conn.conn.is_broken()
    }
}

/// SQLite needs a few pragmas per connection to behave under concurrent access.
#[derive(Debug)]
struct SqlitePragmas;

impl CustomizeConnection<Tracked, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut Tracked) -> Result<(), diesel::r2d2::Error> {
        if let DbConnection::Sqlite(conn) = &mut conn.conn {
            // busy_timeout first, so that even switching to WAL waits for a lock held by a
            // sibling connection instead of failing with SQLITE_BUSY; WAL lets readers proceed
            // during a write.
            diesel::connection::SimpleConnection::batch_execute(
                conn,
                "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;",
            )
            .map_err(diesel::r2d2::Error::QueryError)?;
        }
        Ok(())
    }
}

/// A pool of connections plus the backend it talks to.
#[derive(Clone)]
pub struct Database {
    pool: Pool<Manager>,
    backend: Backend,
    /// `db.namespace`: the database name or SQLite file, never credentials.
    namespace: String,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("backend", &self.backend)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// What `DATABASE_URL` names, parsed. `Debug` masks the credentials of a PostgreSQL URL.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A `postgres://` or `postgresql://` URL, passed to libpq as is.
    Postgres(String),
    /// A SQLite file path (`sqlite://path`, `sqlite:path`).
    Sqlite(std::path::PathBuf),
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseUrl::Postgres(url) => f
                .debug_tuple("Postgres")
                .field(&telemetry::config::redact_userinfo(url))
                .finish(),
            DatabaseUrl::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
        }
    }
}

/// The database name in a PostgreSQL URL (`db.namespace`): the path, never the credentials.
fn postgres_database_name(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = rest.split_once('/').map_or("", |(_, path)| path);
    path.split('?').next().unwrap_or_default().to_owned()
}

impl DatabaseUrl {
    /// Parses a `DATABASE_URL` value.
    pub fn parse(url: &str) -> Result<Self, String> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_owned()));
        }
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(
                    "a sqlite URL needs a file path, e.g. sqlite://data/users.db".to_owned(),
                );
            }
            return Ok(Self::Sqlite(path.into()));
        }
        Err("expected a postgres://, postgresql:// or sqlite:// URL".to_owned())
    }
}

/// The key of the PostgreSQL advisory lock held while migrating ("users" in ASCII).
const MIGRATION_LOCK: i64 = 0x0075_7365_7273;

type MigrationError = Box<dyn std::error::Error + Send + Sync>;

/// Applies pending migrations under a session advisory lock: replicas that start together (a
/// Deployment's pods, a rolling update) would otherwise race to create the same table, and all
/// but one would fail. The others wait, then find nothing pending. (SQLite serialises writers
/// on its own.)
fn migrate_postgres(conn: &mut PgConnection) -> Result<(), MigrationError> {
    use diesel::sql_types::BigInt;
    diesel::sql_query("SELECT pg_advisory_lock($1)")
        .bind::<BigInt, _>(MIGRATION_LOCK)
        .execute(conn)?;
    let result = conn.run_pending_migrations(MIGRATIONS).map(|_| ());
    // Released explicitly: the connection goes back to the pool, and the lock with it otherwise.
    let unlocked = diesel::sql_query("SELECT pg_advisory_unlock($1)")
        .bind::<BigInt, _>(MIGRATION_LOCK)
        .execute(conn);
    result?;
    unlocked?;
    Ok(())
}

/// Checks that SQLite can create and write `path`, so a read-only or missing data directory
/// stops start-up with one line saying what to fix, instead of SQLite's "unable to open the
/// database file" (which names neither the file nor the cause).
fn sqlite_writable(path: &std::path::Path) -> Result<(), UserError> {
    let unusable = |what: &std::path::Path, e: std::io::Error| {
        UserError::Storage(format!(
            "{} is not writable ({e}); point DATA_DIR or DATABASE_URL at a writable directory",
            what.display()
        ))
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| unusable(parent, e))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(drop)
        .map_err(|e| unusable(path, e))
}

impl Database {
    /// Connects, checks one connection out (so a bad URL fails at start-up, not on the first
    /// request) and applies pending migrations.
    pub fn connect(url: &DatabaseUrl, pool_size: u32) -> Result<Self, UserError> {
        let (conn_url, backend, namespace) = match url {
            DatabaseUrl::Postgres(url) => {
                let namespace = postgres_database_name(url);
                (url.clone(), Backend::Postgres, namespace)
            }
            DatabaseUrl::Sqlite(path) => {
                sqlite_writable(path)?;
                let path = path.display().to_string();
                (path.clone(), Backend::Sqlite, path)
            }
        };
        let manager = Manager {
            backend,
            url: conn_url,
        };
        // One connection up front: a wrong password or a refused connection is reported at
        // once, in the backend's own words, instead of as a pool timeout.
        manager.connect().map_err(|e| {
            UserError::Unavailable(format!(
                "cannot connect to the {} database: {e}",
                backend.system()
            ))
        })?;
        let pool = Pool::builder()
            .max_size(pool_size)
            .connection_timeout(Duration::from_secs(5))
            .connection_customizer(Box::new(SqlitePragmas))
            .build(manager)
            .map_err(|e| {
                UserError::Unavailable(format!(
                    "cannot connect to the {} database: {e}",
                    backend.system()
                ))
            })?;
        let database = Self {
            pool,
            backend,
            namespace,
        };
        database.migrate()?;
        Ok(database)
    }

    /// The backend this database talks to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    fn migrate(&self) -> Result<(), UserError> {
        let mut conn = self.checkout()?;
        let result = match &mut conn.conn {
            DbConnection::Pg(conn) => migrate_postgres(conn),
            DbConnection::Sqlite(conn) => conn.run_pending_migrations(MIGRATIONS).map(|_| ()),
        };
        result.map_err(|e| UserError::Internal(format!("migrations failed: {e}")))
    }

    /// Whether a working connection can be had now (checked out and pinged), without a span:
    /// the health watchdog asks every few seconds.
    pub async fn reachable(&self) -> bool {
        let database = self.clone();
        tokio::task::spawn_blocking(move || {
            // Pinged even when it has just been used: the pool skips that (ALIVE_BYPASS_WINDOW),
            // the watchdog must not.
            database
                .checkout()
                .is_ok_and(|mut conn| conn.conn.ping().is_ok())
        })
        .await
        .unwrap_or(false)
    }

    fn checkout(&self) -> Result<PooledConnection<Manager>, UserError> {
        self.pool
            .get()
            .map_err(|e| UserError::Unavailable(format!("no database connection: {e}")))
    }

    /// Runs `query` on the blocking pool inside a `db` client span.
    async fn run<T, F>(&self, operation: &'static str, query: F) -> Result<T, UserError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, UserError> + Send + 'static,
    {
        let span = tracing::info_span!(
            "db",
            otel.name = %format_args!("{operation} users"),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            db.system = self.backend.system(),
            db.system.name = self.backend.system(),
            db.namespace = %self.namespace,
            db.operation.name = operation,
            db.collection.name = "users",
        );
        let database = self.clone();
        let span_in_task = span.clone();
        service_runtime::spawn_blocking_in(span, move || {
            let result = database.checkout().and_then(|mut conn| {
                let result = query(&mut conn.conn);
                // Only success vouches for the connection (a refused duplicate is a success
                // of the database's): after anything else the next checkout pings it.
                if matches!(result, Ok(_) | Err(UserError::EmailTaken)) {
                    conn.last_worked = std::time::Instant::now();
                }
                result
            });
            if result
                .as_ref()
                .is_err_and(service_runtime::grpc::CallError::is_server_fault)
            {
                span_in_task.record("otel.status_code", "ERROR");
            }
            result
        })
        .await
        .map_err(|e| UserError::Internal(format!("database task failed: {e}")))?
    }

    /// Inserts `row`; `EmailTaken` when the email is already registered.
    pub async fn insert(&self, row: UserRow) -> Result<UserRow, UserError> {
        self.run("INSERT", move |db| {
            let inserted = on_backend!(db, |conn| diesel::insert_into(users::table)
                .values(&row)
                .execute(conn));
            match inserted {
                Ok(_) => Ok(row),
                Err(diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::UniqueViolation,
                    _,
                )) => Err(UserError::EmailTaken),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// The user with `id`, if any.
    ///
    /// The key is unique, so the query has no `LIMIT`: `.first()` would bind one (`LIMIT ?`),
    /// and SQLite's planner looks at a bound limit's value, so every execution of the cached
    /// statement re-bound it and recompiled the statement from its SQL (about 70 allocations
    /// and a parse per read).
    pub async fn by_id(&self, id: String) -> Result<Option<UserRow>, UserError> {
        self.run("SELECT", move |db| {
            Ok(on_backend!(db, |conn| users::table
                .find(id)
                .select(UserRow::as_select())
                .get_result(conn)
                .optional())?)
        })
        .await
    }

    /// The user with `email` (already lower-cased), if any. `email` is unique: no `LIMIT`, as
    /// in [`Database::by_id`].
    pub async fn by_email(&self, email: String) -> Result<Option<UserRow>, UserError> {
        self.run("SELECT", move |db| {
            Ok(on_backend!(db, |conn| users::table
                .filter(users::email.eq(email))
                .select(UserRow::as_select())
                .get_result(conn)
                .optional())?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_parse() {
        assert_eq!(
            DatabaseUrl::parse("postgres://u@h/db").unwrap(),
            DatabaseUrl::Postgres("postgres://u@h/db".into())
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite://data/u.db").unwrap(),
            DatabaseUrl::Sqlite("data/u.db".into())
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:/tmp/u.db").unwrap(),
            DatabaseUrl::Sqlite("/tmp/u.db".into())
        );
        assert!(DatabaseUrl::parse("sqlite://").is_err());
        assert!(DatabaseUrl::parse("mysql://x").is_err());
    }

    #[test]
    fn credentials_stay_out_of_namespace_and_debug() {
        assert_eq!(
            postgres_database_name("postgres://u:pw@h:5432/app?sslmode=require"),
            "app"
        );
        assert_eq!(postgres_database_name("postgres://u:pw@h"), "");
        let url = DatabaseUrl::parse("postgres://u:pw@h/app").unwrap();
        assert!(!format!("{url:?}").contains("pw"), "{url:?}");
    }
}
