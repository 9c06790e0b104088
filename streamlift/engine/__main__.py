"""`python -m streamlift.engine serve|send|watch|demo` (the same commands as `streamlift ...`)."""

from streamlift.engine.cli import main

raise SystemExit(main())
