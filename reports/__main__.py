"""`python -m reports [--single-file] [--results DIR] [--output DIR]`: Allure 3 HTML report, offline."""

import sys

from audit.report import main

sys.exit(main())
