"""``python -m cytorch ...`` runs the ``cytorch`` command (see ``cytorch.cli``)."""
import sys

from .cli import main

sys.exit(main())
