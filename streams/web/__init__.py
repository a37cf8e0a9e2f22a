"""The web side: health and readiness, the query API, the container health probe."""
