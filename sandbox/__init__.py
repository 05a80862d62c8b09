"""The sandbox cloud: moto served on 127.0.0.1 with realism extensions (latencies, fault injection, fixes).

* ``python -m sandbox start|stop|status|reset|serve|config|settle``: the launcher (:mod:`sandbox.cli`);
* :func:`sandbox.server.start_in_thread`: the same server in a thread of the current process (tests);
* :class:`sandbox.realism.RealismConfig`: what is realistic, settable at start and at runtime over HTTP
  (``/phoenix-sandbox/config``).

See ``docs/sandbox.md``. Importing this package imports neither moto nor boto3.
"""
