"""`python -m pcseg` (used by `torchrun -m pcseg train ...`)."""
from pcseg.cli import main

raise SystemExit(main())
