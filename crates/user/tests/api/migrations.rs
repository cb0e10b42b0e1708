//! Replicas starting together against one fresh PostgreSQL database (a Deployment's pods, a
//! rolling update) must all come up: one applies the migrations, the others find them done.

use testkit::postgres::TestDatabase;
use user::db::{Database, DatabaseUrl};

#[test]
fn replicas_starting_at_once_all_migrate_a_fresh_database() {
    let Some(database) = TestDatabase::create() else {
        return;
    };
    let url = DatabaseUrl::Postgres(database.url().to_owned());
    let replicas: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || Database::connect(&url, 1).map(|_| ()))
        })
        .collect();
    for (i, replica) in replicas.into_iter().enumerate() {
        let outcome = replica.join().expect("no panic");
        assert!(outcome.is_ok(), "replica {i}: {:?}", outcome.err());
    }
}
