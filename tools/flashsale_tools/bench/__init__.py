"""`make bench`: one workload through the classic designs, the Redis ceiling, bare gRPC and Flashsale's pipeline."""
