"""Languages users write: the property expressions and (later) the -l request grammar."""
