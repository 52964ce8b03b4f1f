"""Contracts shared by every Flare+ service: settings, messages, topics, Kafka and database helpers."""
