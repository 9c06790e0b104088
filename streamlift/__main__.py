from streamlift.cli import main

raise SystemExit(main())
