"""`python -m flashsale_tools.bench`: run the benchmark (see flashsale_tools.bench.runner)."""

import flashsale_tools.bench.runner

flashsale_tools.bench.runner.main()
