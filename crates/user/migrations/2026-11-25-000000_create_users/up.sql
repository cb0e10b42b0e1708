-- Portable SQL: the same migration runs on PostgreSQL and SQLite, so there is one history.
-- Timestamps are UTC. `email` is stored lower-cased by the caller, so a plain UNIQUE is
-- case-insensitive in effect and stays portable to SQLite.
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    TIMESTAMP NOT NULL
);
