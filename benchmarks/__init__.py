"""The benchmark behind benchmarks/bench.py, and the numbers it recorded.

  bench_options.py   what is measured: the models, NAM's numbers, Options
  bench_timing.py    how: compiled steps timed, inference speed, pinning
  bench_parts.py     the child processes: training and inference parts
  bench_ensemble.py  the ensemble parts (one step of E members, 2 devices)
  bench_runs.py      processes: the children and whole run.py trainings
  bench_report.py    the printed table, the machine, the JSON

*.json / *.txt hold recorded results; README.md the notes on them.
"""
