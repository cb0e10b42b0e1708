//! Throw-away PostgreSQL databases: one per test, dropped afterwards.
//!
//! Tests that need PostgreSQL call [`TestDatabase::create`]. Where no server answers, they are
//! skipped with one visible line, except under `CI=true`, where a missing database is a failure:
//! CI must never pass by skipping.

use std::io::Write as _;

use diesel::{Connection as _, PgConnection, RunQueryDsl as _};

/// The server tests use unless `TEST_DATABASE_URL` names another (a maintenance database on it).
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

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
                assert!(
                    !in_ci,
                    "CI=true but PostgreSQL is unreachable at {admin_url}: {error}"
                );
                return Err(format!(
                    "unreachable at {admin_url} (set TEST_DATABASE_URL): {error}"
                ));
            }
        };
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .map_err(|e| format!("cannot create a database on {admin_url}: {e}"))?;
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
