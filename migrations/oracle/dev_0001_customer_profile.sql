-- The business table for development, tests and the demo only: in
-- production it exists already and belongs to the business side.
--
-- Floats are BINARY_DOUBLE: govsync re-reads every row it wrote and compares
-- the values exactly, and an IEEE double survives a BINARY_DOUBLE column
-- unchanged (a NUMBER column stores a decimal approximation; a NUMBER with a
-- scale rounds, and the verification would report the difference).
-- review_flag is NUMBER(1) 0/1 (Oracle before 23ai has no SQL BOOLEAN).
CREATE TABLE customer_profile (
    customer_id          VARCHAR2(64 CHAR) NOT NULL,
    name                 VARCHAR2(100 CHAR),
    address              VARCHAR2(200 CHAR),
    geo_lat              BINARY_DOUBLE,
    geo_lon              BINARY_DOUBLE,
    geo_accuracy         VARCHAR2(32 CHAR),
    id_card              VARCHAR2(18 CHAR),
    phone                VARCHAR2(20 CHAR),
    carrier_info         CLOB,
    quality_score        BINARY_DOUBLE,
    validation_status    VARCHAR2(32 CHAR),
    review_flag          NUMBER(1) DEFAULT 0,
    review_priority      VARCHAR2(16 CHAR),
    last_update          TIMESTAMP(6) WITH TIME ZONE,
    last_governance_time TIMESTAMP(6) WITH TIME ZONE,
    version              NUMBER(19) DEFAULT 0 NOT NULL,
    CONSTRAINT customer_profile_pk PRIMARY KEY (customer_id),
    CONSTRAINT customer_profile_score CHECK (quality_score BETWEEN 0 AND 1),
    CONSTRAINT customer_profile_flag CHECK (review_flag IN (0, 1))
);
