"""Blueprints: ``points`` (the API), ``health`` (liveness/readiness), ``meta`` (version, OpenAPI)."""
