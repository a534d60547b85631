"""Feature drift and training/serving skew: the served-feature sample against the serving
version's training set (PSI, KS) and against the batch job's features for the same events."""
