from mlprep.cli import main

raise SystemExit(main())
