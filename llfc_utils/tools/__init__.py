"""The book's machinery, apart from the science: runner, planner, sweeps, labs, site check, Colab, results.

Nothing in `llfc_utils` outside this subpackage imports it (a test checks that), so the science can be
read, installed and reused without the book tooling.
"""
