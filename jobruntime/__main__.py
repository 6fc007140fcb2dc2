from jobruntime.cli.main import main

raise SystemExit(main())
