"""Load scenarios (Locust) that reproduce the alarm-triggered rollback against any endpoint."""
