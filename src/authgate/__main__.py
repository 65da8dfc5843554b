"""``python -m authgate``: the same as the ``authgate`` command."""

from authgate.cli import main

raise SystemExit(main())
