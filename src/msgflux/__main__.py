"""``python -m msgflux``: the same as the ``msgflux`` command."""

from msgflux.cli import main

raise SystemExit(main())
