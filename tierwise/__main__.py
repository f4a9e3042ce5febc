from tierwise.cli import main

raise SystemExit(main())
