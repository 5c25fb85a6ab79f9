"""Benchmarks (not tests): throughput against compute-only and the FLOP floor, stats speed, time to accuracy."""
