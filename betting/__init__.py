"""Bookmaking arithmetic: settlement of singles, each-way and multiples; pure functions, no I/O."""
