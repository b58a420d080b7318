"""Task callables of the valid corpus. Read by `flow validate`, never imported by it."""
