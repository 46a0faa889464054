from unilearn.cli import main

raise SystemExit(main())
