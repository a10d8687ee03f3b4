"""Tests of edgesal.eval: metrics, sanity checks, engines, report, CLI."""
