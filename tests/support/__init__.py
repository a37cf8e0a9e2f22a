"""Test support: the real broker, real workers, and Kafka read/write helpers."""
