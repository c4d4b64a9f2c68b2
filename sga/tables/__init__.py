"""What each benchmark notebook shows besides its figures (:mod:`sga.plots`): tables of data, runs and results."""
