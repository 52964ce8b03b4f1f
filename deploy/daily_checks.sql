-- The deployment plan's Daily Checks (Model Performance Monitoring), as the plan writes them. Run:
--   flare db-shell < deploy/daily_checks.sql   (or flare db-shell -f deploy/daily_checks.sql)

-- Check prediction volume
SELECT
    DATE(prediction_timestamp) as date,
    COUNT(*) as predictions,
    COUNT(DISTINCT model_version) as model_versions
FROM flare_prediction_log
WHERE prediction_timestamp > NOW() - INTERVAL '7 days'
GROUP BY DATE(prediction_timestamp)
ORDER BY date DESC;

-- Check for errors
SELECT * FROM flare_prediction_log
WHERE prediction_timestamp > NOW() - INTERVAL '24 hours'
  AND (predicted_class IS NULL OR class_probabilities IS NULL)
ORDER BY prediction_timestamp DESC;

-- Review recent flares and predictions
SELECT
    p.prediction_timestamp,
    p.predicted_class,
    p.actual_flare_class,
    p.class_probabilities
FROM flare_prediction_log p
WHERE p.prediction_timestamp > NOW() - INTERVAL '7 days'
  AND p.actual_flare_class IS NOT NULL
ORDER BY p.prediction_timestamp DESC;
