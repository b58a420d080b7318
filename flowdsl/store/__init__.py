"""The state folder: journals, run state, history, checkpoints, result codecs, caches."""
