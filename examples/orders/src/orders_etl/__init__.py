"""Task functions of the orders example pipeline."""
