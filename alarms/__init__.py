"""Generate CloudWatch alarms, dashboards and CodeDeploy rollback configuration; replay EMF offline."""
