"""Text to checked IR: grammar, builder, IR, loader, validator, diagnostics, plans; imports nothing else of flow."""
