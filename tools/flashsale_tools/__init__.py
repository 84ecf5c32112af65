"""The tools around the services: the local platform, the demo, the invariant checker, the load test, the benchmark
and the `flashsale` command."""
