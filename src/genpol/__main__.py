"""`python -m genpol ...` (what torchrun runs) is the `genpol` command."""

from genpol.cli import main

raise SystemExit(main())
