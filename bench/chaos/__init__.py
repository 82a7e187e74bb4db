"""The chaos soak: thousands of verified SSE streams under churn and faults (issue 14).

Modules, one concept each: :mod:`~bench.chaos.sse` (the event-stream parser),
:mod:`~bench.chaos.ledger` (the pass/fail rule), :mod:`~bench.chaos.load` (the
streams), :mod:`~bench.chaos.publishers`, :mod:`~bench.chaos.system` (gunicorn,
Redis and Sentinel), :mod:`~bench.chaos.scenario` (the fault schedule and the
end-state checks), :mod:`~bench.chaos.report`; run it with ``python -m bench.chaos``.
"""
