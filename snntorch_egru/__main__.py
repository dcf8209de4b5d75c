"""``python -m snntorch_egru <command>`` (also what ``torchrun -m snntorch_egru train`` runs)."""

import sys

from .cli import main

sys.exit(main())
