"""`python -m flowdsl`: the same as the `flow` command."""

from .cli import main

raise SystemExit(main())
