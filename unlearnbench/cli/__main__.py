"""``python -m unlearnbench.cli``: the same as the ``unlearnbench`` command."""

import sys

from . import main

sys.exit(main())
