"""Reading pickles from the internet (detectron2 and caffe2 model files) without running their code.

``pickle.load`` calls whatever callable a file names, so a crafted ``.pkl`` runs code on load (and
detectron2 loads its model-zoo files that way). :func:`load_array_pickle` unpickles with an allow-list:
the containers Python builds itself, and the few numpy callables that rebuild an array. Anything else
is refused before it is called.
"""

import os
import pickle
from typing import Any

# (module, name) pairs an array pickle may reference: numpy's array and scalar reconstruction (old and
# new module paths, numpy < 2 and >= 2) and the bytes decoding that protocol-2 pickles of Python 3 use.
ALLOWED_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
        ("collections", "OrderedDict"),
    }
)


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle references a callable outside :data:`ALLOWED_GLOBALS`."""


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise UnsafePickleError(f"refers to {module}.{name}, which a weights file has no reason to call")
        return super().find_class(module, name)


def load_array_pickle(path: str | os.PathLike) -> Any:
    """The content of a pickle of numpy arrays in plain containers (Python 2 pickles included, read as
    latin-1 as detectron2 does).

    Raises:
        ValueError: the file is not a pickle, or references anything but numpy arrays and containers
            (the message names the file and the reference).
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as file:
            return _ArrayUnpickler(file, encoding="latin1").load()
    except UnsafePickleError as error:
        raise ValueError(f"{path}: refused to unpickle: the file {error}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as error:
        reason = str(error) or type(error).__name__
        raise ValueError(f"{path}: not a readable pickle of arrays ({reason})") from None
