// The `users` table, identical on PostgreSQL and SQLite (see migrations/).

diesel::table! {
    users (id) {
        id -> Text,
        email -> Text,
        name -> Text,
        password_hash -> Text,
        created_at -> Timestamp,
    }
}
