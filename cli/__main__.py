"""``python -m flowhawk.cli``: the same as the ``flowhawk`` console script."""

import sys

from flowhawk.cli.main import main

sys.exit(main())
