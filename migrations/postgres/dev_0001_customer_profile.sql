-- The business table, for development, tests and the demo only: in
-- production it exists already and belongs to the business side.
CREATE TABLE IF NOT EXISTS customer_profile (
    customer_id          VARCHAR(64) PRIMARY KEY,
    name                 VARCHAR(100),
    address              VARCHAR(200),
    geo_lat              DOUBLE PRECISION,
    geo_lon              DOUBLE PRECISION,
    geo_accuracy         VARCHAR(32),
    id_card              VARCHAR(18),
    phone                VARCHAR(20),
    carrier_info         TEXT,
    quality_score        DOUBLE PRECISION CHECK (quality_score BETWEEN 0 AND 1),
    validation_status    VARCHAR(32),
    review_flag          BOOLEAN DEFAULT FALSE,
    review_priority      VARCHAR(16),
    last_update          TIMESTAMPTZ,
    last_governance_time TIMESTAMPTZ,
    version              BIGINT NOT NULL DEFAULT 0
);
