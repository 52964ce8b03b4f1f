-- The evaluator's drift episodes: one row per episode of a model version, opened with its alert and closed
-- when the metrics recover. The alert id derives from (model_version, ordinal), so a restart never raises
-- an open episode's alert a second time.
CREATE TABLE metric_drift_episodes (
    model_version text        NOT NULL,
    ordinal       integer     NOT NULL,
    alert_id      text UNIQUE NOT NULL,
    window_name   text        NOT NULL,
    metric        text        NOT NULL,
    value         double precision NOT NULL,
    baseline      double precision,
    threshold     double precision NOT NULL,
    started_at    timestamptz NOT NULL,
    cleared_at    timestamptz,
    PRIMARY KEY (model_version, ordinal)
);

-- Metrics and the prediction log are read per model version over event time.
CREATE INDEX model_metrics_latest ON model_metrics (model_version, shadow, window_name, as_of DESC);
CREATE INDEX flare_prediction_log_unresolved ON flare_prediction_log (prediction_timestamp) WHERE resolved_at IS NULL;
