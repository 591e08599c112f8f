"""Helpers of the ``msgflux`` command (:mod:`msgflux.cli`), imported only by it."""
