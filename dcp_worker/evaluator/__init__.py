"""``dcp-worker evaluator``: the package's sandboxes behind DCP's supervisor⇄evaluator protocol.

The official worker (dcp-client's ``Sandbox`` over a ``StandaloneWorker``) connects to an
evaluator and drives one sandbox per connection with newline-framed JSON (see the README,
"dcp-worker evaluator"). ``lines`` frames the connection, ``session`` is the protocol state
machine for one sandbox, ``sandbox`` adapts a sandbox host process to it, and ``server`` serves
it on standard input and output or on a TCP port.
"""
