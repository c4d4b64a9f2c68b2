"""Helper package for the Smoothed Gradient Ascent (SGA) paper companion."""

import logging
import warnings

__version__ = "0.1.0"

# Harmless notices that would otherwise end up in every notebook, silenced before anything imports transformers or
# bitsandbytes (which may import the other at its own import): bitsandbytes cannot fetch an optional CPU kernel from
# the hub (sga.models.guard_bnb_cpu keeps 4-bit layers off that path anyway), the `kernels` package it asks for that
# kernel says, in offline mode, that it skips the kernel's publisher trust check, and peft still reads transformers'
# deprecated `is_gradient_checkpointing` attribute.
OFFLINE_TRUST_NOTICE = "Skipping publisher trust check for 'kernels-community/quantization-bitsandbytes'"


class _DropNotice(logging.Filter):
    """Drops the log records whose message starts with ``prefix``; every other record passes."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
_kernels_hub_log = logging.getLogger("kernels._internals.hf_hub")
if not any(type(f).__name__ == "_DropNotice" for f in _kernels_hub_log.filters):  # once, also on a reload
    _kernels_hub_log.addFilter(_DropNotice(OFFLINE_TRUST_NOTICE))
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
