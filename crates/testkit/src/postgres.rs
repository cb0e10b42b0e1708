//! Throw-away PostgreSQL databases: one per test, dropped afterwards.
//!
//! Tests that need PostgreSQL call [`TestDatabase::create`]. Where no server answers, they are
//! skipped with one visible line, except under `CI=true`, where a missing database is a failure:
//! CI must never pass by skipping.

use std::io::Write as _;

use diesel::{Connection as _, PgConnection, RunQueryDsl as _};

/// The server tests use unless `TEST_DATABASE_URL` names another (a maintenance database on it).
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// `url` with any password masked, for messages.
fn redact(url: &str) -> String {
    telemetry::config::redact_userinfo(url)
}

/// A database created for one test and dropped when this value is.
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates `test_<uuid>` on the test server, or returns `None` (after printing one
    /// `SKIPPED` line) when the server is unreachable and `CI` is not `true`.
    pub fn create() -> Option<Self> {
        match Self::try_create() {
            Ok(database) => Some(database),
            Err(why) => {
                // Straight to stderr: the test harness captures eprintln! of passing tests, and
                // a skip must be visible.
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED: the PostgreSQL part of this test: {why}"
                );
                None
            }
        }
    }

    /// Creates `test_<uuid>`, or says why not; under `CI=true` an unreachable server panics,
    /// because CI must never pass by skipping.
    pub fn try_create() -> Result<Self, String> {
        let admin_url =
            std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned());
        let mut admin = match PgConnection::establish(&admin_url) {
            Ok(conn) => conn,
            Err(error) => {
                let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
                let shown = redact(&admin_url);
                assert!(
                    !in_ci,
                    "CI=true but PostgreSQL is unreachable at {shown}: {error}"
                );
                return Err(format!(
                    "unreachable at {shown} (set TEST_DATABASE_URL): {error}"
                ));
            }
        };
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .map_err(|e| format!("cannot create a database on {}: {e}", redact(&admin_url)))?;
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(base, _)| base);
        let url = format!("{base}/{name}");
        Ok(Self {
            admin_url,
            name,
            url,
        })
    }

    /// The new database's URL, for `DATABASE_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgConnection::establish(&self.admin_url) {
            // FORCE: the service under test may still hold pooled connections.
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin);
        }
    }
}

/// A throw-away PostgreSQL database when the server is reachable (always under `CI=true`),
/// otherwise a SQLite file in `dir` with one `NOTE:` line saying so. Returns the database to
/// keep alive and the `DATABASE_URL` for the user service.
pub fn postgres_or_sqlite(dir: &std::path::Path) -> (Option<TestDatabase>, String) {
    match TestDatabase::try_create() {
        Ok(database) => {
            let url = database.url().to_owned();
            (Some(database), url)
        }
        Err(why) => {
            let _ = writeln!(
                std::io::stderr(),
                "NOTE: PostgreSQL {why}; the user service runs on SQLite instead"
            );
            (None, format!("sqlite://{}", dir.join("users.db").display()))
        }
    }
}
