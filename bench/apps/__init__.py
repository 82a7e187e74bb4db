"""The systems the benchmark runs, one module each, all with the same routes:

``GET /events/?cid=...`` streams; ``POST /publish`` (body: the event's data, UTF-8)
sends it to every stream; ``GET /count`` answers the number of open streams.
The floor (``floor.py``) is not a WSGI app but answers the same routes.
"""
