"""``python -m infra.bench``."""

from infra.bench.run import main

raise SystemExit(main())
