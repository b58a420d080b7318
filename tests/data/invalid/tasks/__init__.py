"""Task callables for the invalid corpus (read by `flow validate`, never imported)."""
