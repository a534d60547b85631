"""Feature definitions: per-event transforms shared by batch and online, entity aggregates in
Spark SQL, point-in-time training sets and the online entity-feature snapshot."""
