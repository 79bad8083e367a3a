"""``python -m saliency_tf1``: the ``saliency-tf1`` command line."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
