"""Benchmarks on this machine: the SQuAD corpus (`corpus`), the measurements (`run`) and the report (`report`)."""
