"""Capture and log files to the canonical flow table (see ``extractors.schema``)."""
