"""Benchmarks of sessionhub, run by `make bench` (`python -m bench.runner`).

Conventions (see bench/README.md):

* a benchmark is a module ``bench/bench_<name>.py`` exposing ``run(duration: float) -> str``,
  which returns one markdown section: a heading, the commands, the table(s), "how to read it";
* shared helpers (gunicorn, wrk, machine description, the bench database and Redis) live in
  ``bench/common.py``;
* benchmark-only Django code lives in this package: ``bench.settings`` (its own PostgreSQL
  database ``sessionhub_bench``, Redis db 12 and key prefix), ``bench.urls``, ``bench.views``,
  ``bench.designs`` (alternative authentication classes);
* ``bench/results/`` (git-ignored) receives ``latest.md`` and the scratch files of a run.
"""
