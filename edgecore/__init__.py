"""edgecore: transformer inference (dense and mixture-of-experts) on small
CPUs under a hard memory budget.

Attributes are imported on first use, so `edgecore replay` or `edgecore gate`
start without loading NumPy kernels they do not need.
"""

from importlib import import_module

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "capabilities": "edgecore.ops",
    "set_num_threads": "edgecore.ops",
    "get_num_threads": "edgecore.ops",
    "thread_calibration": "edgecore.ops",
    "Engine": "edgecore.engine",
    "load_safetensors": "edgecore.weights",
    "SafetensorsError": "edgecore.weights",
    "load_gguf": "edgecore.weights",
    "GGUFError": "edgecore.weights",
    "MemoryPool": "edgecore.memory",
    "MemoryBudgetError": "edgecore.memory",
    "parse_size": "edgecore.memory",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'edgecore' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
