"""`edgecore serve`: an OpenAI-compatible HTTP server on the scheduler and the engine.

Layers, top to bottom: ``app`` (Starlette routes, checks, SSE), ``loop``
(the engine thread: commands in, scheduler ticks, events out),
``executor`` (one scheduler tick = one batched ``engine.step``), ``job``
(one request's sampling and text, as ``Engine.generate`` does it),
``protocol`` (request bodies, field by field), ``metrics`` (Prometheus
text) and ``server`` (Uvicorn, binding, shutdown). Needs the ``serve``
extra (Starlette + Uvicorn); see docs/serving.md.
"""
