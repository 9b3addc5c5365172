"""``python app.py demo``: the whole gateway offline, end to end, for a first look.

A fresh embedded SQLite database in a folder of its own, the four sandboxes on free ports of
127.0.0.1 (rate-scaled), a tenant wired to them, the API, the worker and the schedules; then the
first pull and relay, a re-score, signed sample webhooks and a local REST-hook subscriber, and a
summary of what every side holds. The modules:

- :mod:`~gateway.demo.sandboxes`: the four sandboxes, their credentials and their own stats;
- :mod:`~gateway.demo.seed`: Repeat Customer Insights' customers, with order histories dated
  against today, some long silent;
- :mod:`~gateway.demo.setup`: the demo's settings, database folder and tenant;
- :mod:`~gateway.demo.receiver`: the local REST-hook subscriber (verifies every signature);
- :mod:`~gateway.demo.webhooks`: the signed sample posts;
- :mod:`~gateway.demo.progress`: progress bars (a terminal) or plain lines (not one);
- :mod:`~gateway.demo.figures`: what the gateway and the sandboxes say, and whether they agree;
- :mod:`~gateway.demo.summary`: the tables;
- :mod:`~gateway.demo.command`: the command itself.
"""
