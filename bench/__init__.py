"""Benchmark harness: our worker against Quix Streams, a naive Faust agent and raw aiokafka."""
