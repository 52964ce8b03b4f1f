-- One writer per table. The registry and its history were written by two services: the trainer registered each
-- version and stored its backtest and validation evidence; the gatekeeper set its status and moved its files.
-- Now each fact has one writer. model_versions (the trainer's) holds what a version is and the evidence for it;
-- model_status (the gatekeeper's) holds what the gatekeeper decided of it. model_registry is the view joining
-- them, with the columns it always had: a version the gatekeeper has not acted on yet is a candidate.
ALTER TABLE model_registry RENAME TO model_versions;
ALTER INDEX model_registry_pkey RENAME TO model_versions_pkey;

CREATE TABLE model_status (
    version    text PRIMARY KEY REFERENCES model_versions (version),
    -- the version's kind, repeated here so that the database itself keeps one champion per kind
    kind       text        NOT NULL,
    status     text        NOT NULL DEFAULT 'candidate'
        CHECK (status IN ('candidate', 'held', 'champion', 'challenger', 'retired', 'rejected', 'archived', 'deleted')),
    -- where retention moved the files, once it has
    artifacts  jsonb,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX model_status_one_champion ON model_status (kind) WHERE status = 'champion';

INSERT INTO model_status (version, kind, status, artifacts, updated_at)
SELECT version, kind, status, CASE WHEN status IN ('archived', 'deleted') THEN artifacts END, updated_at
FROM model_versions WHERE status <> 'candidate';

-- the champion index and the status check go with the column
ALTER TABLE model_versions DROP COLUMN status;

CREATE VIEW model_registry AS
SELECT v.version, v.kind, COALESCE(s.artifacts, v.artifacts) AS artifacts, v.digests,
       v.data_window_start, v.data_window_end, v.hyperparameters, v.validation, v.backtest,
       COALESCE(s.status, 'candidate') AS status, v.created_at, GREATEST(v.updated_at, s.updated_at) AS updated_at
FROM model_versions v LEFT JOIN model_status s USING (version);

-- The history likewise: the trainer's entries (registered, backtested, validated) move to model_training_history,
-- the gatekeeper's decisions stay, renamed model_decisions. Both take their ids from the one sequence, so that
-- model_history, the view over both, keeps the order in which things were done.
ALTER TABLE model_history RENAME TO model_decisions;
ALTER TRIGGER model_history_append_only ON model_decisions RENAME TO model_decisions_append_only;
CREATE TABLE model_training_history (LIKE model_decisions INCLUDING ALL);

ALTER TABLE model_decisions DISABLE TRIGGER model_decisions_append_only;
WITH moved AS (
    DELETE FROM model_decisions WHERE action IN ('registered', 'backtested', 'validated') RETURNING *
)
INSERT INTO model_training_history SELECT * FROM moved;
ALTER TABLE model_decisions ENABLE TRIGGER model_decisions_append_only;

CREATE TRIGGER model_training_history_append_only
    BEFORE UPDATE OR DELETE ON model_training_history
    FOR EACH ROW EXECUTE FUNCTION forbid_history_change();

CREATE VIEW model_history AS
SELECT * FROM model_decisions UNION ALL SELECT * FROM model_training_history;
