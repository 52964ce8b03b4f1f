-- The live metrics the gatekeeper learnt from MetricsUpdated, kept for its rollback check (a new champion's
-- figures against its predecessor's before the promotion). model_metrics is the evaluator's alone; the
-- gatekeeper keeps what it consumed in its own table, seeded once from what model_metrics held.
CREATE TABLE gatekeeper_metrics (
    message_id    text PRIMARY KEY,
    model_version text        NOT NULL,
    shadow        boolean     NOT NULL,
    window_name   text        NOT NULL,
    as_of         timestamptz NOT NULL,
    scored_count  integer     NOT NULL,
    metrics       jsonb       NOT NULL,
    UNIQUE (model_version, shadow, window_name, as_of)
);
CREATE INDEX gatekeeper_metrics_latest ON gatekeeper_metrics (model_version, shadow, window_name, as_of DESC);

INSERT INTO gatekeeper_metrics (message_id, model_version, shadow, window_name, as_of, scored_count, metrics)
SELECT message_id, model_version, shadow, window_name, as_of, scored_count, metrics FROM model_metrics
ON CONFLICT DO NOTHING;
