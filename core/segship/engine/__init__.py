"""The export engine: config -> plan -> batches -> destination -> state -> report."""
