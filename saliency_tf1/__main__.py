"""``python -m saliency_tf1``: the command line."""

import sys

from .cli import main

sys.exit(main())
