"""Alert delivery: the feed process (pw.alerts -> outputs), retries, parking and redelivery."""
