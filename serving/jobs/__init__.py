"""Batch jobs: a file of inputs scored by one version, split into chunks that workers run at a
lower priority than online requests (docs/jobs.md). `files.py` reads and writes the formats,
`services.py` holds every change (each audited), `progress.py` the live figures in Redis; the
chunk and assembly work itself is workers/jobs.py, queued by workers/tasks.py."""
