"""The governor: keeps the worker out of its host owner's way.

``Governor`` decides from ``GovernorSettings`` how many sandboxes may run (0: paused), whether
to fetch, and why; ``Throttler`` stops and continues sandbox hosts to honour the decision and
the CPU cap; ``serve_control`` lets ``dcp-worker pause|resume|status`` reach a running worker.

Import them from their modules (``governor``, ``settings``, ``throttle``, ``control``): the
command line reads ``settings`` for every command, and the rest is not needed to start one.
"""
