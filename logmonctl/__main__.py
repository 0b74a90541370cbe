"""`python -m logmonctl`, as the tests and a venv without the entry point run it."""
from logmonctl.cli import main

raise SystemExit(main())
