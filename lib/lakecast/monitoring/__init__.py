"""Monitoring: anomaly detectors over metric series, and how they are measured."""
