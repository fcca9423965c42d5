"""Per-batch reports: scored flows, summaries and the self-contained HTML report (above the model)."""
