"""End-to-end steps per benchmark, called cell by cell from the notebooks."""
