"""RED/USE metrics as CloudWatch EMF, JSON logs and X-Ray-compatible traces for Flask services and workers."""
