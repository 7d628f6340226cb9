"""The terminal face: a Textual app over the engine. Only this package imports textual."""
