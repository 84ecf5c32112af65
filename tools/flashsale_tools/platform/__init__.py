"""Local, real backends (Kafka, PostgreSQL) started as processes for development and tests."""
