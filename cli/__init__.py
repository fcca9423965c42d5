"""The ``flowhawk`` command line (argparse): one module per command family; work is done in the library."""
