from models.train.train import main

raise SystemExit(main())
