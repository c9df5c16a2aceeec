-- Reviewers' decisions (issue 15). Every decision message the applier
-- consumes leaves one row here, applied or refused (with the reason), in
-- the transaction that applies it: the decision id is the key, so a
-- decision is applied at most once, and a refusal stays visible to the
-- reviewer. A message that is not a decision at all is kept too, under
-- the id "invalid:<partition>:<offset>".
CREATE TABLE IF NOT EXISTS govsync_review_decision (
    decision_id      VARCHAR(100) COLLATE "C" PRIMARY KEY,
    event_id         VARCHAR(300) COLLATE "C" NOT NULL,
    reviewer         VARCHAR(200) NOT NULL,
    decision         VARCHAR(16)  NOT NULL,
    outcome          VARCHAR(16)  NOT NULL CHECK (outcome IN ('applied', 'refused')),
    reason           TEXT,
    comment          TEXT,
    corrected        TEXT,
    decided_at       TIMESTAMPTZ,
    applied_at       TIMESTAMPTZ  NOT NULL DEFAULT now(),
    batch_id         VARCHAR(300) NOT NULL,
    source_partition INTEGER      NOT NULL,
    source_offset    BIGINT       NOT NULL
);
CREATE INDEX IF NOT EXISTS govsync_review_decision_event ON govsync_review_decision (event_id);
-- The decision that closed an item.
ALTER TABLE govsync_review_item ADD COLUMN IF NOT EXISTS decision_id VARCHAR(100);
-- Who wrote a change-log entry: NULL for the governance engine's results,
-- "reviewer:<name>" for a reviewer's decision (its event_id is the
-- decision id).
ALTER TABLE govsync_change_log ADD COLUMN IF NOT EXISTS source VARCHAR(220);
