-- One writer per table. The prediction log was written by two services: the predictor logged each forecast and
-- the evaluator upserted its outcome on the same row, each coping with the other having created it first. Now
-- the predictor's log of what it issued is forecast_log, and the evaluator's record of what followed each
-- forecast is forecast_outcomes. flare_prediction_log, which the deployment plan's queries read, is the view
-- joining them, with the columns it always had.
ALTER TABLE flare_prediction_log RENAME TO forecast_log;
ALTER INDEX flare_prediction_log_time RENAME TO forecast_log_time;

-- the evaluator's memory of what it scored: the forecast as it received it, and its outcome
CREATE TABLE forecast_outcomes (
    forecast_id          text PRIMARY KEY,
    prediction_timestamp timestamptz NOT NULL,
    model_version        text        NOT NULL,
    shadow               boolean     NOT NULL,
    status               text        NOT NULL,
    p_ge_c_24h           double precision,
    p_ge_m_24h           double precision,
    p_ge_x_24h           double precision,
    correlation_id       text,
    degraded             boolean     NOT NULL DEFAULT false,
    actual_flare_class   text,
    outcome_scorable     boolean     NOT NULL,
    hours_to_first       jsonb,
    resolved_at          timestamptz NOT NULL
);
CREATE INDEX forecast_outcomes_time ON forecast_outcomes (prediction_timestamp);

INSERT INTO forecast_outcomes
SELECT forecast_id, prediction_timestamp, model_version, shadow, status, p_ge_c_24h, p_ge_m_24h, p_ge_x_24h,
       correlation_id, degraded, actual_flare_class, outcome_scorable, hours_to_first, resolved_at
FROM forecast_log WHERE resolved_at IS NOT NULL;

DROP INDEX flare_prediction_log_unresolved;
ALTER TABLE forecast_log
    DROP COLUMN actual_flare_class,
    DROP COLUMN outcome_scorable,
    DROP COLUMN hours_to_first,
    DROP COLUMN resolved_at;

-- every forecast either service knows of: the predictor publishes a forecast before it logs it, so the evaluator
-- may have resolved one the log does not hold yet
CREATE VIEW flare_prediction_log AS
SELECT forecast_id,
       COALESCE(l.prediction_timestamp, o.prediction_timestamp) AS prediction_timestamp,
       COALESCE(l.model_version, o.model_version) AS model_version,
       COALESCE(l.shadow, o.shadow) AS shadow,
       COALESCE(l.status, o.status) AS status,
       l.predicted_class, l.class_probabilities, l.probability_distribution,
       COALESCE(l.p_ge_c_24h, o.p_ge_c_24h) AS p_ge_c_24h,
       COALESCE(l.p_ge_m_24h, o.p_ge_m_24h) AS p_ge_m_24h,
       COALESCE(l.p_ge_x_24h, o.p_ge_x_24h) AS p_ge_x_24h,
       COALESCE(l.correlation_id, o.correlation_id) AS correlation_id,
       o.actual_flare_class, o.outcome_scorable, o.hours_to_first, o.resolved_at, l.logged_at,
       COALESCE(l.degraded, o.degraded) AS degraded,
       l.reason
FROM forecast_log l FULL JOIN forecast_outcomes o USING (forecast_id);
