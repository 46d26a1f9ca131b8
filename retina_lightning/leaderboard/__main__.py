"""``python -m retina_lightning.leaderboard ...`` = ``retina leaderboard ...``."""

from retina_lightning.leaderboard.cli import leaderboard_main

raise SystemExit(leaderboard_main())
