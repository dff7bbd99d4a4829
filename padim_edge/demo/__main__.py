"""``python -m padim_edge.demo ROOT``: write the demo set."""

import sys

from padim_edge.demo.dataset import main

sys.exit(main())
