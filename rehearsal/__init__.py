"""Blue/green deployment with alarm-triggered rollback, rehearsed on one machine."""
