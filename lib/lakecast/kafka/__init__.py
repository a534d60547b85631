"""Kafka plumbing of the streaming path: clients, serde, dead letters, the transactional loop."""
