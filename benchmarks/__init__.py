"""cascadeflow's benchmark suite: `python -m benchmarks` (`make bench`), `--quick` for CI."""
