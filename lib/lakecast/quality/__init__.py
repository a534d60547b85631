"""Prediction quality once outcomes are known: metrics, the ``model_quality`` table, alerts."""
