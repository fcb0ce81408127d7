"""The operator console: server-rendered pages (aiohttp, Jinja2, htmx) in their own
process, ``python -m console`` (``make run`` starts it on http://127.0.0.1:8088).

Where each page's data comes from (docs/console.md has the details):

- live events: the ingestion and dead-letter topics, tailed by the console's own
  assign-based reader (:mod:`console.live`), each record screened as the workers do;
- profiles: the workers' profile API, called with the signed-in operator's key
  (:mod:`console.worker_api`);
- dead letters: ``events.deadletter`` and ``delivery.deadletter``; re-drive is the code
  behind ``scripts/deadletters`` and ``scripts/delivery`` (:mod:`console.deadletters`);
- definitions: the definitions topic (:mod:`console.definitions`);
- audiences, journeys and delivery: counted from ``activation.audience_changes``, the
  action topics and ``delivery.outcomes`` (:mod:`console.stats`, :mod:`console.feeds`);
  the journey funnel from the workers' ``/metrics`` (:mod:`console.funnel`).

Nothing is built at import: :func:`console.app.create_app` takes the settings and the
collaborators (tests give fakes).
"""
