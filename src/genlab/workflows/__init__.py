"""Workflows over the Python API: the demo, compare, sweep, the run's report page and `genlab bench`."""
