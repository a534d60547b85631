"""Causal anomaly detectors: ``make_detector(name, **params)`` builds one per series."""

from lakecast.monitoring.detectors.base import BaseDetector, Detector
from lakecast.monitoring.detectors.registry import DEFAULT_DETECTOR, DETECTORS, make_detector

__all__ = ["DEFAULT_DETECTOR", "DETECTORS", "BaseDetector", "Detector", "make_detector"]
