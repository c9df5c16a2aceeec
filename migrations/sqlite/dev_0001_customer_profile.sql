-- The business table for development, tests and the demo. SQLite does not
-- enforce VARCHAR lengths, so the lengths of the PostgreSQL and Oracle
-- tables are CHECK constraints here: a value too long is rejected the same
-- way on every database.
CREATE TABLE IF NOT EXISTS customer_profile (
    customer_id          TEXT PRIMARY KEY CHECK (length(customer_id) <= 64),
    name                 TEXT CHECK (length(name) <= 100),
    address              TEXT CHECK (length(address) <= 200),
    geo_lat              REAL,
    geo_lon              REAL,
    geo_accuracy         TEXT CHECK (length(geo_accuracy) <= 32),
    id_card              TEXT CHECK (length(id_card) <= 18),
    phone                TEXT CHECK (length(phone) <= 20),
    carrier_info         TEXT,
    quality_score        REAL CHECK (quality_score BETWEEN 0 AND 1),
    validation_status    TEXT CHECK (length(validation_status) <= 32),
    review_flag          INTEGER DEFAULT 0,
    review_priority      TEXT CHECK (length(review_priority) <= 16),
    last_update          TEXT,
    last_governance_time TEXT,
    version              INTEGER NOT NULL DEFAULT 0
);
