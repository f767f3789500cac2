"""Bridge to neural (PyTorch) mixture-of-experts implementations (optional, needs torch).

Importing ``moetheory`` or ``moetheory.bridge`` never imports torch: the names below are loaded
on first use from :mod:`moetheory.bridge.torch`, :mod:`moetheory.bridge.importers` and
:mod:`moetheory.bridge.train`. Without torch they raise an ``ImportError`` that names the extra
to install (``pip install "moetheory[torch]"``, or ``pip install torch==2.13.0`` for the CPU
build).

See ``docs/bridge.md`` for how each neural gate maps (or fails to map) onto a statistical gate.
"""
from __future__ import annotations

import importlib

#: The message of the ImportError raised when torch is missing.
TORCH_HINT = ("moetheory.bridge needs PyTorch, which is an optional dependency. Install the extra "
              "with  pip install \"moetheory[torch]\"  (or the CPU-only build with  "
              "pip install torch==2.13.0).")


def require_torch():
    """Import and return torch, or raise an ImportError naming the extra to install.

    Returns
    -------
    module
        The ``torch`` module.

    Raises
    ------
    ImportError
        With message :data:`TORCH_HINT` when torch is not installed.

    Examples
    --------
    >>> try:
    ...     torch = require_torch()
    ... except ImportError as err:   # torch missing: the message names the extra
    ...     assert "moetheory[torch]" in str(err)
    ... else:
    ...     assert torch.__name__ == "torch"
    """
    try:
        import torch  # noqa: PLC0415 (absolute import: the real PyTorch)
    except ImportError as exc:
        raise ImportError(TORCH_HINT) from exc
    return torch


_LAZY = {
    # moetheory.bridge.torch
    "GaussianMoE": "torch", "ROUTERS": "torch", "STATISTICAL_ROUTERS": "torch",
    "NEURAL_ROUTERS": "torch", "DenseToSparseSchedule": "torch", "RouterOutput": "torch",
    "to_torch": "torch", "from_torch": "torch", "statistical_equivalent": "torch",
    "load_balancing_loss": "torch", "TORCH_ACTIVATIONS": "torch",
    "register_torch_activation": "torch",
    # moetheory.bridge.importers
    "import_moe": "importers", "import_layer": "importers", "normalize_gate": "importers",
    # moetheory.bridge.train
    "train_layer": "train", "TrainResult": "train", "random_init": "train",
    "routing_stats": "train", "simulate": "train",
}

__all__ = ["TORCH_HINT", "require_torch", *sorted(_LAZY)]


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(f"moetheory.bridge.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'moetheory.bridge' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
