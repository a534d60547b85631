"""The streaming half of `make demo`: real workers, a real broker, figures printed.

Each demo run uses its own uuid-suffixed topics, so its counts are exact and a second run
never reads the first one's records.
"""
