"""Prefect flows, tasks and the ``flowhawk`` command line. Wiring only: the work lives in the libraries."""
