import sys

from jaxlatent.cli import main

sys.exit(main())
