import sys

from allocscope.cli import main

sys.exit(main())
