"""One module per command; each has main(argv=None) -> int."""
