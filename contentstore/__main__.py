import sys

from contentstore.cli import main

sys.exit(main())
