"""``python -m causal_wm``: the ``causal-wm`` command line (also under ``torchrun -m causal_wm``)."""

from causal_wm.cli import main

raise SystemExit(main())
