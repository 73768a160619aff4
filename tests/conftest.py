"""Shared test setup."""
import os

# Figures never open a window during the tests, even on a desktop: cytorch.viz shows a figure
# in a window only when matplotlib has an interactive backend.
os.environ["MPLBACKEND"] = "Agg"
