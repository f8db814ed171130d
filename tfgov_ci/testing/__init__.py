"""Helpers for testing and demonstrating tfgov-ci pipelines against real, local services."""
