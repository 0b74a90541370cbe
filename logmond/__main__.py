import sys

from logmond.cli import main

sys.exit(main())
