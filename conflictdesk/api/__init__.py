"""The REST API (/api/v1/): thin DRF views over the desk's and the engine's own functions."""
