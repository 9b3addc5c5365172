"""Schedules that run once per slot across worker processes.

Schedules are rows (tenant, route, interval, next run, lease) in ``schedules``; each worker
process runs one short APScheduler 3 interval job, the tick (:mod:`gateway.schedule.ticker`),
that claims due rows the way deliveries are claimed (:mod:`gateway.schedule.store`), runs their
jobs (:mod:`gateway.schedule.jobs`) and sets their next run on the schedule's slot grid
(:mod:`gateway.schedule.slots`). Two processes never run one schedule for the same slot; a
missed slot runs once; a process that dies mid-run leaves the row to another after its lease.

``python -m gateway.schedule`` runs a ticker on its own until SIGTERM (tests use it).
"""

from gateway.schedule.jobs import REGISTRY, current_run, register
from gateway.schedule.ticker import Ticker, TickerRefused, run_ticker

__all__ = ["REGISTRY", "Ticker", "TickerRefused", "current_run", "register", "run_ticker"]
