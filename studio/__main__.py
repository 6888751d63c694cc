"""`python -m studio` does what the `zaoxiang` command does."""

from studio.cli import main

raise SystemExit(main())
