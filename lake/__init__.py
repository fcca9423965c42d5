"""The Parquet lake: flow batches, the ingest ledger, quarantine and reports, all written atomically."""
