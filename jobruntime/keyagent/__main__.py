from jobruntime.keyagent.cli import main

raise SystemExit(main())
