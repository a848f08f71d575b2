"""The pipeline language: `.kapal.yml` / `.gitlab-ci.yml` in, a frozen `Plan` out.

Pure: no I/O beyond reading the pipeline files. Imports neither `runner` nor `web`.
"""
