"""The online inference worker: Kafka events in, predictions, dead letters and metrics out."""
