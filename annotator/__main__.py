"""`python -m annotator` behaves like the `annotator` command."""

from annotator.app import main

raise SystemExit(main())
