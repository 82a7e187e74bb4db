"""Side-by-side benchmark of sse_kit and its peers; run `python -m bench --help`."""
