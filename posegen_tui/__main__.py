import sys

from posegen_tui.cli import main

sys.exit(main())
