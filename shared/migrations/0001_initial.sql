-- Flare+ schema. Every table a stream writes has the unique key that makes its writes idempotent upserts.

CREATE TABLE flux_observations (
    satellite        text        NOT NULL,
    time_tag         timestamptz NOT NULL,
    cadence_seconds  integer     NOT NULL,
    scaling_era      text        NOT NULL CHECK (scaling_era IN ('swpc_scaled', 'true_flux')),
    xrsa_flux        double precision,
    xrsb_flux        double precision,
    quality          text        NOT NULL DEFAULT 'good',
    source           text        NOT NULL,
    message_id       text        NOT NULL,
    revision         integer     NOT NULL DEFAULT 0,
    ingested_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (satellite, cadence_seconds, time_tag)
);
CREATE INDEX flux_observations_time ON flux_observations (time_tag);

CREATE TABLE flare_events (
    event_id      text PRIMARY KEY,
    start_time    timestamptz NOT NULL,
    peak_time     timestamptz NOT NULL,
    end_time      timestamptz,
    goes_class    text        NOT NULL,
    class_letter  text        NOT NULL CHECK (class_letter IN ('A', 'B', 'C', 'M', 'X')),
    peak_flux     double precision NOT NULL,
    source        text        NOT NULL,
    satellite     text,
    scaling_era   text        NOT NULL,
    noaa_region   text,
    ingested_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX flare_events_peak ON flare_events (peak_time);
CREATE INDEX flare_events_source_peak ON flare_events (source, peak_time);

CREATE TABLE flare_prediction_log (
    forecast_id              text PRIMARY KEY,
    prediction_timestamp     timestamptz NOT NULL,
    model_version            text        NOT NULL,
    shadow                   boolean     NOT NULL DEFAULT false,
    status                   text        NOT NULL,
    predicted_class          text,
    class_probabilities      jsonb,
    probability_distribution jsonb,
    p_ge_c_24h               double precision,
    p_ge_m_24h               double precision,
    p_ge_x_24h               double precision,
    correlation_id           text,
    actual_flare_class       text,
    outcome_scorable         boolean,
    hours_to_first           jsonb,
    resolved_at              timestamptz,
    logged_at                timestamptz NOT NULL DEFAULT now(),
    UNIQUE (model_version, shadow, prediction_timestamp)
);
CREATE INDEX flare_prediction_log_time ON flare_prediction_log (prediction_timestamp);

CREATE TABLE flare_ingestion_log (
    run_id            text PRIMARY KEY,
    source            text        NOT NULL,
    started_at        timestamptz NOT NULL,
    finished_at       timestamptz,
    duration_seconds  double precision,
    records_read      integer     NOT NULL DEFAULT 0,
    records_published integer     NOT NULL DEFAULT 0,
    records_corrected integer     NOT NULL DEFAULT 0,
    records_rejected  integer     NOT NULL DEFAULT 0,
    records_missing   integer     NOT NULL DEFAULT 0,
    gaps              integer     NOT NULL DEFAULT 0,
    first_event_time  timestamptz,
    last_event_time   timestamptz,
    used_cache        boolean     NOT NULL DEFAULT false,
    status            text        NOT NULL,
    error             text
);

CREATE TABLE flare_system_validation_log (
    id           bigserial PRIMARY KEY,
    run_id       text        NOT NULL,
    check_name   text        NOT NULL,
    passed       boolean     NOT NULL,
    detail       text,
    actor        text,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (run_id, check_name)
);

CREATE TABLE model_registry (
    version           text PRIMARY KEY,
    kind              text        NOT NULL,
    artifacts         jsonb       NOT NULL,
    digests           jsonb       NOT NULL,
    data_window_start timestamptz,
    data_window_end   timestamptz,
    hyperparameters   jsonb       NOT NULL DEFAULT '{}',
    validation        jsonb       NOT NULL DEFAULT '{}',
    backtest          jsonb       NOT NULL DEFAULT '{}',
    status            text        NOT NULL DEFAULT 'candidate'
        CHECK (status IN ('candidate', 'held', 'champion', 'challenger', 'retired', 'rejected', 'archived', 'deleted')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX model_registry_one_champion ON model_registry (kind) WHERE status = 'champion';

-- Append-only: who did what to which model, when, why, with what evidence.
CREATE TABLE model_history (
    id           bigserial PRIMARY KEY,
    event_id     text UNIQUE NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    event_time   timestamptz,
    action       text        NOT NULL,
    version      text,
    actor        text        NOT NULL,
    reason       text        NOT NULL,
    evidence     jsonb       NOT NULL DEFAULT '{}'
);

CREATE FUNCTION forbid_history_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'model_history is append-only';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER model_history_append_only
    BEFORE UPDATE OR DELETE ON model_history
    FOR EACH ROW EXECUTE FUNCTION forbid_history_change();

CREATE TABLE retrain_requests (
    request_id   text PRIMARY KEY,
    target_class text        NOT NULL,
    reason       text        NOT NULL,
    requested_by text        NOT NULL,
    evidence     jsonb       NOT NULL DEFAULT '{}',
    status       text        NOT NULL DEFAULT 'requested',
    event_time   timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE model_metrics (
    message_id    text PRIMARY KEY,
    model_version text        NOT NULL,
    shadow        boolean     NOT NULL,
    window_name   text        NOT NULL,
    as_of         timestamptz NOT NULL,
    scored_count  integer     NOT NULL,
    metrics       jsonb       NOT NULL,
    reliability   jsonb       NOT NULL DEFAULT '[]',
    UNIQUE (model_version, shadow, window_name, as_of)
);

CREATE TABLE dead_letters (
    message_id    text PRIMARY KEY,
    service       text        NOT NULL,
    source_topic  text        NOT NULL,
    reason        text        NOT NULL,
    raw_value     text        NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now()
);
