"""``python -m quill_cli``: the ``quill`` command."""

import sys

from quill_cli.main import main

sys.exit(main())
