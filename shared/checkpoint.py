"""Checkpoint I/O: safetensors weights and safe loading of third-party PyTorch pickles.

Third-party checkpoints (e.g. taming-transformers' Lightning ``last.ckpt``) are pickles, and a
pickle can name any importable callable. ``load_torch_checkpoint`` never runs code from the file:

1. It first calls ``torch.load(..., weights_only=True)``, torch's own allowlisting unpickler.
2. When that refuses the file (``pickle.UnpicklingError``: Lightning callback classes used as dict
   keys, omegaconf hyper-parameters, numpy scalars, ``defaultdict``...), it loads again with
   ``weights_only=False`` and a custom ``pickle_module`` whose unpickler (a subclass of the
   pure-Python ``pickle._Unpickler``) resolves globals only from an allowlist: torch's tensor
   rebuild functions and dtypes, plain builtin containers and scalars, numpy scalars/arrays and
   ``typing.Any``. Classes from Lightning, taming and omegaconf resolve to inert ``Placeholder``
   subclasses that only record their arguments and state. Every other global raises
   ``CheckpointError`` at the ``GLOBAL`` opcode, before anything could be called, and ``BUILD``
   (``__setstate__``/attribute assignment) is only honoured on placeholders, containers, tensors
   and numpy arrays/dtypes.

The file is opened once and both attempts read that handle. TorchScript archives are refused
up front, because ``torch.load(weights_only=False)`` would hand them to ``torch.jit.load``.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import collections
import datetime
import functools
import os
import pickle
import tempfile
import types
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from shared.errors import one_line

__all__ = [
    "CheckpointError",
    "Placeholder",
    "load_torch_checkpoint",
    "load_weights",
    "save_weights",
    "split_prefix",
]

TORCH_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
PLACEHOLDER_PACKAGES = ("pytorch_lightning", "lightning", "lightning_fabric", "taming", "omegaconf")


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, unsafe or not in the expected layout."""


class Placeholder:
    """Inert stand-in for a class named by a third-party pickle; it only records its inputs."""

    pickled_name: ClassVar[str] = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> Placeholder:
        obj = super().__new__(cls)
        obj.args, obj.kwargs, obj.state = args, kwargs, None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<placeholder for {self.pickled_name}>"


@functools.cache
def placeholder_class(qualified_name: str) -> type[Placeholder]:
    """The placeholder class standing for ``qualified_name`` (one class per name)."""
    short = qualified_name.rsplit(".", 1)[-1]
    return type(short, (Placeholder,), {"pickled_name": qualified_name})


# --- saving and loading weights -------------------------------------------------------------


def save_weights(state_dict: Mapping[str, Tensor], path: str | os.PathLike) -> None:
    """Write a flat tensor dict as safetensors, atomically (temp file + ``os.replace``).

    Tensors are moved to CPU and made contiguous; tensors sharing storage are cloned so that
    tied weights keep all their names.
    """
    path = Path(path)
    tensors = _standalone_tensors(state_dict)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"format": "pt"})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_weights(path: str | os.PathLike) -> dict[str, Tensor]:
    """Flat tensor dict from ``.safetensors`` or a PyTorch checkpoint (its ``state_dict``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        _check_file(path)
        try:
            return dict(load_file(str(path), device="cpu"))
        except Exception as exc:
            raise CheckpointError(f"cannot read safetensors file {path}: {one_line(exc)}") from exc
    if suffix in TORCH_SUFFIXES:
        checkpoint = load_torch_checkpoint(path)
        state_dict = checkpoint.get("state_dict", checkpoint)
        if not isinstance(state_dict, Mapping):
            raise CheckpointError(f"{path}: 'state_dict' is a {type(state_dict).__name__}")
        return _flat_tensor_dict(state_dict, path)
    expected = ", ".join((".safetensors", *TORCH_SUFFIXES))
    raise CheckpointError(f"unsupported weights file {path}: expected one of {expected}")


def split_prefix(state_dict: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """Entries under ``prefix.`` with the prefix stripped (e.g. ``loss.discriminator``)."""
    if not prefix:
        return dict(state_dict)
    head = prefix.rstrip(".") + "."
    return {key[len(head) :]: value for key, value in state_dict.items() if key.startswith(head)}


def load_torch_checkpoint(path: str | os.PathLike) -> dict:
    """Load a ``torch.save`` checkpoint dict onto CPU without running code from the file."""
    path = Path(path)
    _check_file(path)
    with open(path, "rb") as file:
        if _is_torchscript(file):
            raise CheckpointError(f"{path} is a TorchScript archive, not a weights checkpoint")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                obj = torch.load(file, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            file.seek(0)
            obj = _restricted_load(file, path)
        except Exception as exc:
            raise _unreadable(path, exc) from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict")
    return obj


# --- helpers ---------------------------------------------------------------------------------


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint file is empty (0 bytes): {path}")


def _unreadable(path: Path, exc: BaseException) -> CheckpointError:
    return CheckpointError(
        f"cannot read checkpoint {path} (corrupt, truncated or not a PyTorch checkpoint): "
        f"{one_line(exc)}"
    )


def _is_torchscript(file: BinaryIO) -> bool:
    try:
        with zipfile.ZipFile(file) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile:
        return False
    finally:
        file.seek(0)
    return any(name.split("/", 1)[-1] == "constants.pkl" for name in names)


def _standalone_tensors(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    tensors: dict[str, Tensor] = {}
    seen_storages: set[tuple[torch.device, int]] = set()
    for key, value in state_dict.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise TypeError(f"save_weights needs str -> Tensor items, got {key!r}: {type(value)}")
        tensor = value.detach().cpu()
        storage = tensor.untyped_storage()
        owner = (storage.device, storage.data_ptr())
        whole = storage.nbytes() == tensor.numel() * tensor.element_size()
        if owner in seen_storages or not whole or not tensor.is_contiguous():
            tensor = tensor.clone(memory_format=torch.contiguous_format)
        else:
            seen_storages.add(owner)
        tensors[key] = tensor
    return tensors


def _flat_tensor_dict(state_dict: Mapping, path: Path) -> dict[str, Tensor]:
    bad = [k for k, v in state_dict.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        shown = ", ".join(repr(k) for k in bad[:3])
        raise CheckpointError(f"{path} is not a flat tensor state dict (non-tensors: {shown})")
    return dict(state_dict)


# --- restricted unpickling -------------------------------------------------------------------


class _Refused(pickle.UnpicklingError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _numpy_core() -> types.ModuleType:
    core = getattr(np, "_core", None)
    return core if core is not None and hasattr(core, "numeric") else np.core


def _torch_globals() -> dict[str, Any]:
    try:
        return dict(torch._weights_only_unpickler._get_allowed_globals())
    except AttributeError:
        names = ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_parameter")
        names += ("_rebuild_parameter_with_state",)
        return {f"torch._utils.{name}": getattr(torch._utils, name) for name in names}


@functools.cache
def _allowed_globals() -> dict[str, Any]:
    allowed = _torch_globals()
    for value in vars(torch).values():
        if isinstance(value, torch.dtype | torch.layout | torch.memory_format):
            allowed[str(value)] = value
    allowed.update(
        {
            "torch._tensor._rebuild_from_type_v2": torch._tensor._rebuild_from_type_v2,
            "torch.nn.parameter.Parameter": torch.nn.Parameter,
            "torch.serialization._get_layout": torch.serialization._get_layout,
            "torch.Size": torch.Size,
            "torch.Tensor": Tensor,
            "torch.device": torch.device,
            "_codecs.encode": codecs.encode,
            "typing.Any": Any,
        }
    )
    for kind in (dict, list, tuple, set, frozenset, int, float, complex, bool, str, bytes):
        allowed[f"builtins.{kind.__name__}"] = kind
    allowed.update({"builtins.bytearray": bytearray, "builtins.slice": slice})
    for kind in (collections.OrderedDict, collections.defaultdict, collections.Counter):
        allowed[f"collections.{kind.__name__}"] = kind
    allowed["collections.deque"] = collections.deque
    for kind in (datetime.datetime, datetime.date, datetime.time, datetime.timedelta):
        allowed[f"datetime.{kind.__name__}"] = kind
    allowed["datetime.timezone"] = datetime.timezone
    core = _numpy_core()
    for package in ("numpy.core", "numpy._core"):
        allowed[f"{package}.multiarray.scalar"] = core.multiarray.scalar
        allowed[f"{package}.multiarray._reconstruct"] = core.multiarray._reconstruct
        allowed[f"{package}.numeric._frombuffer"] = core.numeric._frombuffer
    allowed.update({"numpy.dtype": np.dtype, "numpy.ndarray": np.ndarray})
    return allowed


def _resolve_global(module: str, name: str) -> Any:
    full = f"{module}.{name}"
    allowed = _allowed_globals()
    if full in allowed:
        return allowed[full]
    if module == "numpy.dtypes":
        dtype_class = getattr(getattr(np, "dtypes", None), name, None)
        if isinstance(dtype_class, type) and issubclass(dtype_class, np.dtype):
            return dtype_class
    if any(module == pkg or module.startswith(pkg + ".") for pkg in PLACEHOLDER_PACKAGES):
        return placeholder_class(full)
    raise _Refused(full)


_BUILDABLE = (Placeholder, dict, collections.deque, Tensor, np.ndarray, np.dtype)


class _RestrictedUnpickler(pickle._Unpickler):
    """Pure-Python unpickler that resolves globals from an allowlist only."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str) -> Any:
        if self.proto < 3 and self.fix_imports:
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        return _resolve_global(module, name)

    def _guarded_build(self) -> None:
        inst = self.stack[-2]
        if not isinstance(inst, _BUILDABLE):
            kind = inst if isinstance(inst, type) else type(inst)
            raise _Refused(f"{kind.__module__}.{kind.__qualname__}.__setstate__")
        pickle._Unpickler.load_build(self)

    dispatch[pickle.BUILD[0]] = _guarded_build


def _restricted_pickle_load(file: BinaryIO, **kwargs: Any) -> Any:
    return _RestrictedUnpickler(file, **kwargs).load()


_RESTRICTED_PICKLE = types.ModuleType(f"{__name__}._restricted_pickle")
_RESTRICTED_PICKLE.Unpickler = _RestrictedUnpickler
_RESTRICTED_PICKLE.load = _restricted_pickle_load
_RESTRICTED_PICKLE.UnpicklingError = pickle.UnpicklingError


def _find_refusal(exc: BaseException | None) -> _Refused | None:
    while exc is not None:
        if isinstance(exc, _Refused):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _restricted_load(file: BinaryIO, path: Path) -> Any:
    try:
        return torch.load(
            file, map_location="cpu", weights_only=False, pickle_module=_RESTRICTED_PICKLE
        )
    except Exception as exc:
        refusal = _find_refusal(exc)
        if refusal is not None:
            raise CheckpointError(
                f"twostage refuses to load {path}: its pickle asks to run {refusal.name}; "
                "only weights are loaded from third-party files"
            ) from None
        raise _unreadable(path, exc) from exc
