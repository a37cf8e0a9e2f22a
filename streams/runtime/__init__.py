"""The runtime: settings, topics, tables, metrics, tracing, logs, errors, window maths."""
