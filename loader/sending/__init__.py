"""Sending planned invocations: one :class:`~loader.sending.common.InvokerPool` protocol, two implementations
(threads in the loader process, or sender processes)."""
