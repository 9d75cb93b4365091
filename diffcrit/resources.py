"""The machine's memory, and the one check that a run fits in it, made before the run starts.

A request far beyond the machine (``--samples 1000000000000``) would otherwise grow until the kernel kills the
process with no message; this refuses it in one line with the estimate.
"""

from __future__ import annotations

import os

from .errors import UserError

GENERATOR_BYTES = 5_056  # one torch CPU generator (its Mersenne Twister state): one per sample
STATE_COPIES = 6  # float32 copies of a sample an analysis holds at once: noise, x, y, D(y), the final sample, spare


def physical_memory() -> int | None:
    """Bytes of RAM on this machine; None where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_fits(nbytes: int, what: str, hint: str, option: str | None = None) -> None:
    """Refuse ``what`` (e.g. "`samples` 10^12", the ``option`` it comes from) when it needs more than the machine's
    RAM."""
    memory = physical_memory()
    if memory is not None and nbytes > memory:
        raise UserError(f"{what} needs about {_size(nbytes)} of memory and this machine has {_size(memory)}", hint,
                        option=option)


def sampling_bytes(samples: int, numel: int) -> int:
    """Memory that sampling ``samples`` samples of ``numel`` values holds at once (``STATE_COPIES``, generators)."""
    return samples * (GENERATOR_BYTES + STATE_COPIES * 4 * numel)


def _size(nbytes: int) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if nbytes >= scale:
            value = nbytes / scale
            return f"{value:,.0f} {unit}" if value >= 100 else f"{value:.3g} {unit}"
    return f"{nbytes} bytes"
