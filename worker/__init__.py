"""SQS points worker: grants points for "order completed" events, at least once, idempotently."""
