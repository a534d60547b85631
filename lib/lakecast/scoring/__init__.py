"""Batch scoring: mapInArrow over feature rows, a per-worker model cache, GPU placement."""
