"""The embedded local stack: JVM artifacts, a Kafka broker, a Spark standalone cluster."""
