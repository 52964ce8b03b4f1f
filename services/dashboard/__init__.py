"""The live dashboard: flux, flares, forecasts, skill and model history, streamed to the browser."""
