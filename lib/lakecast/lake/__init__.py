"""Delta table specs and the write helpers (create, MERGE, replaceWhere, change data feed)."""
