"""The catalog: an index of what storage holds, rebuilt from storage alone when needed."""
