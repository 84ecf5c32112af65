"""Runtime shared by every service: settings, logging, gRPC, Kafka, storage."""
