-- The gatekeeper's own state.

-- Its event-time clock per stream: where the stream was last seen (a monthly tick is due when the clock
-- crosses it) and how far back it reaches (the schedule waits for enough history).
CREATE TABLE gatekeeper_clock (
    stream           text PRIMARY KEY,
    first_event_time timestamptz NOT NULL,
    last_event_time  timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Every fact that asked for retraining, once, with the request it opened or was folded into.
CREATE TABLE retrain_triggers (
    trigger_id   text PRIMARY KEY,
    request_id   text        NOT NULL,
    source       text        NOT NULL,
    target_class text        NOT NULL,
    reason       text        NOT NULL,
    requested_by text        NOT NULL,
    evidence     jsonb       NOT NULL DEFAULT '{}',
    event_time   timestamptz NOT NULL,
    folded       boolean     NOT NULL,
    decision     text        NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX retrain_triggers_request ON retrain_triggers (request_id);
CREATE INDEX retrain_requests_target_time ON retrain_requests (target_class, event_time);

-- Messages written in the same transaction as the decision they announce and published after it commits;
-- a relay publishes any left unpublished by a crash, so no decision goes unannounced.
CREATE TABLE gatekeeper_outbox (
    message_id   text PRIMARY KEY,
    topic        text        NOT NULL,
    payload      jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX gatekeeper_outbox_unpublished ON gatekeeper_outbox (created_at) WHERE published_at IS NULL;
