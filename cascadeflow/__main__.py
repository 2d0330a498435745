"""`python -m cascadeflow` is the `cascadeflow` command."""

from cascadeflow.cli import main

raise SystemExit(main())
