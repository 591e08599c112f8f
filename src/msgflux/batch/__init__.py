"""Batches: many inputs through one model or gateway, resumable, paced, with progress.

``model.batch(inputs, ...)`` / ``await model.abatch(inputs, ...)`` (and the same
on a gateway) run :mod:`msgflux.batch.runner`; ``msgflux batch`` is the command.
"""

from msgflux.batch.items import BatchError, BatchItem
from msgflux.batch.runner import BatchResult, BatchSummary, arun_batch, run_batch

__all__ = ["BatchError", "BatchItem", "BatchResult", "BatchSummary", "arun_batch", "run_batch"]
