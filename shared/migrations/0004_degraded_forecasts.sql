-- Degraded forecasts (no usable flux: the version's flare-history models) are logged as such, with the reason,
-- so the daily checks and the evaluator can tell them from forecasts made from the flux.
ALTER TABLE flare_prediction_log
    ADD COLUMN degraded boolean NOT NULL DEFAULT false,
    ADD COLUMN reason   text;
