"""`python -m flashsale.bench`: run the benchmark (see flashsale.bench.runner)."""

import flashsale.bench.runner

flashsale.bench.runner.main()
