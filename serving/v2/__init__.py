"""The data plane: KServe v2 inference over REST and websockets, one file per step of a request.

Read in this order:
    http.py       the ASGI routes (/v2/..., /metrics) that console/asgi.py dispatches to before
                  Django; stream.py is the websocket twin (/ws/v2/models/{model}/infer)
    auth.py       the bearer token, checked against a per-process cache
    tokenuse.py   token last_used_at, noted in memory and written in batches off the request path
    protocol.py   decode: v2 JSON and Triton's binary tensors into arrays (pure, no Django)
    signature.py  decode, checked: the arrays against the version's signature (400 names the input)
    routes.py     route: a model's versions, active version and traffic, loaded from the database
    traffic.py    route: the version for this request (weights, sticky A/B key), shadow comparison
    budget.py     the bytes each request holds while in flight, per token and per process (429 past them)
    dataplane.py  enqueue and await: one Redis stream entry per request, the reply by pub/sub
    wire.py       the wire format between web and workers, declared once (the Lua reads its names)
    resp.py       the lean Redis connections: write-only enqueue, the subscribed reply reader
    cache.py      the single-flight, background-refreshed cache that routes and tokens sit in
    outage.py     the database unreachable: last good routes and tokens within a grace, then 503
    server.py     the web server's entry point (uvicorn)
The batch step runs in the workers: workers/batcher.py. Errors: console/errors.py's one table."""
