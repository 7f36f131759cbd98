"""Stream bindings: a model scoring the events of a Redis Stream on the workers (docs/streams.md).
`services.py` holds every change (each audited), `status.py` the figures the workers publish
(lag, predictions, dead letters), which the API, the console and /metrics read; the scoring
itself is workers/streams/."""
