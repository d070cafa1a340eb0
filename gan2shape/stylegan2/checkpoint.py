"""StyleGAN2 checkpoints in the rosinality/stylegan2-pytorch layout.

A checkpoint is a `torch.save`d dict with the official entries 'g_ema' (generator state dict,
the one used for sampling), 'd' (discriminator), optionally 'g' (training generator),
'g_optim', 'd_optim' (optimizer state dicts) and 'latent_avg' ((style_dim,) mean w), plus our
own entry 'gan2shape' holding the architecture (`StyleGAN2Config` fields as plain types,
`format_version`, and a user `extra` dict) so that the networks can be rebuilt exactly.
Official files without that entry are understood too: the architecture is read off the state
dict's keys and shapes.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gan2shape.errors import CheckpointError
from gan2shape.stylegan2.model import (
    Discriminator,
    Generator,
    StyleGAN2Config,
    stylegan2_channels,
)

FORMAT_KEY = "gan2shape"
FORMAT_VERSION = 1
_ARCH_FIELDS = ("size", "style_dim", "n_mlp", "channel_multiplier", "channel_max")
_PLAIN_TYPES = (str, int, float, bool, type(None), Tensor)


@dataclass
class LoadedCheckpoint:
    """Networks and training state rebuilt from a checkpoint file.

    g_ema, d, g: float32 modules on the requested device (d / g None when the file has none).
    latent_avg: (1, style_dim) float32 or None. g_optim / d_optim: optimizer state dicts (CPU)
    or None. config: the architecture the networks were built with. extra: the `extra` dict
    given to `save_checkpoint` ({} for official files). inferred: True when the architecture
    was read off the state dict (official file without our 'gan2shape' entry).
    """

    path: Path
    config: StyleGAN2Config
    g_ema: Generator
    d: Discriminator | None = None
    g: Generator | None = None
    latent_avg: Tensor | None = None
    g_optim: dict[str, Any] | None = None
    d_optim: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    inferred: bool = False


# ----- saving ---------------------------------------------------------------------------------


def _check_plain(value: Any, where: str) -> None:
    """Raise ValueError unless value is made of dict/list/tuple/str/number/bool/None/Tensor."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise ValueError(f"{where}: keys must be str or int, got {k!r}")
            _check_plain(v, f"{where}[{k!r}]")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
    elif not isinstance(value, _PLAIN_TYPES):
        raise ValueError(
            f"{where} is a {type(value).__name__}; checkpoints hold only dicts, lists, strings, "
            f"numbers, booleans, None and tensors (so that they load with weights_only=True)"
        )


def _state(module: nn.Module, half: bool) -> dict[str, Tensor]:
    out = {}
    for k, v in module.state_dict().items():
        v = v.detach().cpu()
        out[k] = v.half() if half and v.is_floating_point() else v.clone()
    return out


def _optim_state(optim: Any, name: str) -> dict[str, Any]:
    state = optim.state_dict() if hasattr(optim, "state_dict") else optim
    if not isinstance(state, Mapping):
        raise ValueError(f"{name} must be an optimizer or its state dict, got {type(optim).__name__}")
    _check_plain(state, name)
    return dict(state)


def _config_entry(cfg: StyleGAN2Config, extra: Mapping[str, Any] | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"format_version": FORMAT_VERSION}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        entry[f.name] = list(value) if isinstance(value, tuple) else value
    entry["extra"] = dict(extra) if extra is not None else {}
    return entry


def save_checkpoint(
    path: str | os.PathLike[str],
    g_ema: Generator,
    d: Discriminator | None,
    g: Generator | None = None,
    g_optim: torch.optim.Optimizer | Mapping[str, Any] | None = None,
    d_optim: torch.optim.Optimizer | Mapping[str, Any] | None = None,
    latent_avg: Tensor | None = None,
    extra: Mapping[str, Any] | None = None,
    half: bool = False,
) -> Path:
    """Write networks (and optionally training state) in the official layout, atomically.

    g_ema, d, g: networks of one architecture (d and g may be None). g_optim, d_optim:
    optimizers or their state dicts (stored as given, never halved). latent_avg: (style_dim,)
    or (1, style_dim) mean w, stored as (style_dim,). extra: plain data (dict/list/str/number/
    bool/None/tensor) stored under ckpt['gan2shape']['extra']. half: store the network weights
    and latent_avg as float16 (half the size; loading gives float32 modules).
    The file is written to a temporary name in the same folder and renamed, so a killed job
    never leaves a partial file. Returns the path.
    """
    if not isinstance(g_ema, Generator):
        raise ValueError(f"g_ema must be a Generator, got {type(g_ema).__name__}")
    cfg = g_ema.config
    if g is not None and (not isinstance(g, Generator) or g.config != cfg):
        raise ValueError(f"g must be a Generator with the config of g_ema ({cfg}), got {g!r:.200}")
    if d is not None:
        if not isinstance(d, Discriminator):
            raise ValueError(f"d must be a Discriminator, got {type(d).__name__}")
        if d.size != cfg.size or d.channels != cfg.channels:
            raise ValueError(
                f"d (size {d.size}, channels {d.channels}) does not match g_ema (size {cfg.size}, "
                f"channels {cfg.channels}); save networks of one architecture"
            )
    if extra is not None:
        _check_plain(extra, "extra")

    ckpt: dict[str, Any] = {"g_ema": _state(g_ema, half)}
    if d is not None:
        ckpt["d"] = _state(d, half)
    if g is not None:
        ckpt["g"] = _state(g, half)
    if g_optim is not None:
        ckpt["g_optim"] = _optim_state(g_optim, "g_optim")
    if d_optim is not None:
        ckpt["d_optim"] = _optim_state(d_optim, "d_optim")
    if latent_avg is not None:
        if latent_avg.numel() != cfg.style_dim:
            raise ValueError(f"latent_avg must have style_dim={cfg.style_dim} values, got {tuple(latent_avg.shape)}")
        avg = latent_avg.detach().cpu().reshape(cfg.style_dim).float()
        ckpt["latent_avg"] = avg.half() if half else avg.clone()
    ckpt[FORMAT_KEY] = _config_entry(cfg, extra)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(ckpt, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


# ----- reading --------------------------------------------------------------------------------


def _allow_namespace() -> contextlib.AbstractContextManager[Any]:
    """Let weights_only loading accept argparse.Namespace (official train.py saves its args)."""
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    if safe_globals is not None:
        return safe_globals([argparse.Namespace])
    torch.serialization.add_safe_globals([argparse.Namespace])  # torch < 2.5: no scoped form
    return contextlib.nullcontext()


def _read(path: Path, allow_pickle: bool) -> dict[str, Any]:
    if not path.exists():
        raise CheckpointError(
            f"checkpoint {path} does not exist; check the path (e.g. the GAN checkpoint in "
            f"params.yaml) or download/train the checkpoint first"
        )
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file: give the path of a .pt file")
    problem = _not_a_torch_file(path)
    if problem:
        raise CheckpointError(_unreadable(path, problem))
    try:
        with _allow_namespace():
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" not in str(e):
            raise CheckpointError(_unreadable(path, _reason(e))) from e
        if not allow_pickle:
            found = re.search(r"GLOBAL (\S+)", str(e))
            raise CheckpointError(
                f"checkpoint {path} holds Python objects other than tensors "
                f"(e.g. {found.group(1) if found else 'unknown'}), which are not loaded by default because "
                f"unpickling them can run code; if you trust the file, pass allow_pickle=True"
            ) from e
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e2:  # noqa: BLE001 - any failure means an unreadable file
            raise CheckpointError(_unreadable(path, _reason(e2))) from e2
    except Exception as e:  # noqa: BLE001 - torch.load raises many types on damaged files
        raise CheckpointError(_unreadable(path, _reason(e))) from e
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(
            f"checkpoint {path} holds a {type(ckpt).__name__}, not a dict with 'g_ema' and 'd'; "
            f"it is not a StyleGAN2 checkpoint in the rosinality/stylegan2-pytorch layout"
        )
    if "g_ema" not in ckpt:
        raise CheckpointError(
            f"checkpoint {path} has no 'g_ema' entry (entries: {sorted(map(str, ckpt))}); "
            f"expected the rosinality/stylegan2-pytorch layout ('g_ema', 'd', ...); convert the "
            f"file to that layout"
        )
    for name in ("g_ema", "d", "g"):
        if name in ckpt and not (
            isinstance(ckpt[name], Mapping) and all(isinstance(v, Tensor) for v in ckpt[name].values())
        ):
            raise CheckpointError(f"checkpoint {path}: entry '{name}' is not a state dict of tensors")
    return dict(ckpt)


_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since PyTorch 1.6
_PICKLE_PROTOCOLS = tuple(bytes([0x80, p]) for p in range(2, 6))  # the legacy format starts with a pickle


def _not_a_torch_file(path: Path) -> str | None:
    """Why the file cannot be a torch.save file, judged by its first bytes; None when it may be one."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not head:
        return "the file is empty"
    if head == _ZIP_MAGIC or head[:2] in _PICKLE_PROTOCOLS:
        return None
    return f"its first bytes are {head.hex(' ')}, not those of a zip archive (a .pt file is one)"


def _reason(e: BaseException) -> str:
    """One short line about a torch.load failure, without PyTorch's advice on weights_only, which
    is about trusted pickles and does not apply to a damaged file."""
    text = str(e)
    detail = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n|$)", text)
    if detail:
        text = detail.group(1)
    elif "weights_only" in text:
        text = ""
    line = text.strip().splitlines()[0] if text.strip() else ""
    line = line.split(". ")[0].rstrip(".")[:200]  # the first sentence: the rest is PyTorch-internal advice
    return f"{type(e).__name__}{': ' + line if line else ''}"


def _unreadable(path: Path, reason: str) -> str:
    return (
        f"checkpoint {path} cannot be read: {reason}. It is truncated, corrupted or not a PyTorch checkpoint: "
        "re-download or re-create it, or give another file"
    )


def _indices(state: Mapping[str, Tensor], prefix: str, suffix: str) -> list[int]:
    out = []
    for k in state:
        if k.startswith(prefix) and k.endswith(suffix):
            middle = k[len(prefix) : len(k) - len(suffix)]
            if middle.isdigit():
                out.append(int(middle))
    return sorted(out)


def infer_config(g_state: Mapping[str, Tensor]) -> StyleGAN2Config:
    """Read the architecture off an official generator state dict.

    size from the number of to_rgbs, n_mlp from the style.N keys, style_dim from the
    modulation weights, channel_max and channel_multiplier from the channel counts (the
    multiplier is ambiguous below 64 px, where it is reported as 2, the official default).
    lr_mlp and blur_kernel cannot be read off and are the official 0.01 and (1, 3, 3, 1).
    Raises ValueError when the keys do not look like a StyleGAN2 generator.
    """
    for key in ("input.input", "conv1.conv.modulation.weight"):
        if key not in g_state:
            raise ValueError(f"no '{key}' key: not a StyleGAN2 generator state dict")
    mlp = _indices(g_state, "style.", ".weight")
    if mlp != list(range(1, len(mlp) + 1)):
        raise ValueError(f"mapping layers style.N must be numbered 1..n, found {mlp}")
    rgbs = _indices(g_state, "to_rgbs.", ".conv.weight")
    if rgbs != list(range(len(rgbs))):
        raise ValueError(f"to_rgbs.N must be numbered 0..n-1, found {rgbs}")
    size = 2 ** (len(rgbs) + 2)
    style_dim = int(g_state["conv1.conv.modulation.weight"].shape[1])
    found = {4: int(g_state["input.input"].shape[1])}
    for i in rgbs:
        found[2 ** (i + 3)] = int(g_state[f"to_rgbs.{i}.conv.weight"].shape[2])
    channel_max = found[4] if found[4] < 512 else max(512, *found.values())
    fits = [cm for cm in range(1, 65) if all(stylegan2_channels(cm, channel_max)[r] == c for r, c in found.items())]
    if not fits:
        raise ValueError(f"channel counts per resolution {found} do not follow the StyleGAN2 table")
    cm = 2 if 2 in fits else fits[0]
    return StyleGAN2Config(
        size=size,
        style_dim=style_dim,
        n_mlp=len(mlp),
        channel_multiplier=cm,
        channel_max=channel_max,
    )


def _config_from_entry(entry: Any, path: Path) -> StyleGAN2Config:
    if not isinstance(entry, Mapping):
        raise CheckpointError(f"checkpoint {path}: entry '{FORMAT_KEY}' is not a dict")
    version = entry.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format_version {version!r}; this code reads version "
            f"{FORMAT_VERSION}; update gan2shape or re-save the checkpoint"
        )
    names = {f.name for f in dataclasses.fields(StyleGAN2Config)}
    kwargs = {k: entry[k] for k in names if k in entry}
    if "blur_kernel" in kwargs:
        kwargs["blur_kernel"] = tuple(kwargs["blur_kernel"])
    try:
        return StyleGAN2Config(**kwargs)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path}: invalid architecture entry: {e}") from e


def _describe(cfg: StyleGAN2Config) -> str:
    return ", ".join(f"{k}={getattr(cfg, k)}" for k in _ARCH_FIELDS)


def _check_state(
    state: Mapping[str, Tensor],
    net: nn.Module,
    entry: str,
    path: Path,
    cfg: StyleGAN2Config,
    hint: str,
) -> None:
    """Raise CheckpointError at the first key/shape that differs between file and network."""
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    problem = None
    for key, shape in expected.items():
        if key not in state:
            problem = f"key '{key}' (expected shape {shape}) is missing from the file"
            break
        found = tuple(state[key].shape)
        if found != shape:
            problem = f"key '{key}' has shape {found} in the file, expected {shape}"
            break
    if problem is None:
        extra = [k for k in state if k not in expected]
        if extra:
            problem = (
                f"the file has key '{extra[0]}' (shape {tuple(state[extra[0]].shape)}) that the network does not have"
            )
    if problem is not None:
        kind = "discriminator" if entry == "d" else "generator"
        raise CheckpointError(
            f"checkpoint {path}: entry '{entry}' does not match a StyleGAN2 {kind} with "
            f"{_describe(cfg)}: {problem}. {hint}"
        )


def _build(
    net_cls: type[nn.Module],
    kwargs: dict[str, Any],
    state: Mapping[str, Tensor],
    device: torch.device,
) -> nn.Module:
    # Build on the meta device (no random init of big networks), then adopt the file's tensors.
    with torch.device("meta"):
        net = net_cls(**kwargs)
    state32 = {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    net.load_state_dict(state32, strict=True, assign=True)
    return net.to(device)


def load_checkpoint(
    path: str | os.PathLike[str],
    size: int | None = None,
    style_dim: int | None = None,
    n_mlp: int | None = None,
    channel_multiplier: int | None = None,
    device: str | torch.device = "cpu",
    *,
    channel_max: int | None = None,
    allow_pickle: bool = False,
) -> LoadedCheckpoint:
    """Rebuild the networks stored in a checkpoint (ours or an official rosinality file).

    The architecture comes from the file's 'gan2shape' entry or, for official files, from the
    state dict itself (`infer_config`); arguments that are not None override it, and the file
    must then match them key for key and shape for shape. Half-precision files give float32
    modules. allow_pickle: also load files holding arbitrary Python objects (only for trusted
    files; official checkpoints with an argparse Namespace load without it).
    Raises CheckpointError (missing, unreadable or truncated file, no 'g_ema', or the first
    key/shape mismatch, naming the file, the key and both shapes).
    """
    path = Path(path)
    device = torch.device(device)
    ckpt = _read(path, allow_pickle)
    g_state = ckpt["g_ema"]
    inferred = FORMAT_KEY not in ckpt
    if inferred:
        try:
            file_cfg = infer_config(g_state)
        except ValueError as e:
            raise CheckpointError(
                f"checkpoint {path}: cannot read the architecture off 'g_ema': {e}; it is not a "
                f"rosinality/stylegan2-pytorch generator"
            ) from e
    else:
        file_cfg = _config_from_entry(ckpt[FORMAT_KEY], path)

    requested = {
        "size": size,
        "style_dim": style_dim,
        "n_mlp": n_mlp,
        "channel_multiplier": channel_multiplier,
        "channel_max": channel_max,
    }
    requested = {k: v for k, v in requested.items() if v is not None}
    try:
        cfg = dataclasses.replace(file_cfg, **requested)
    except ValueError as e:
        raise CheckpointError(f"loading {path}: invalid requested architecture: {e}") from e
    if requested:
        hint = (
            f"The file itself holds {_describe(file_cfg)}"
            f"{' (read off its state dict)' if inferred else ''}; drop the explicit arguments "
            f"({', '.join(f'{k}={v}' for k, v in requested.items())}) or use the checkpoint "
            f"they describe."
        )
    else:
        hint = (
            "The file is damaged or not in the rosinality/stylegan2-pytorch layout; re-create "
            "it, or convert it to that layout."
        )

    g_kwargs = dict(
        size=cfg.size,
        style_dim=cfg.style_dim,
        n_mlp=cfg.n_mlp,
        channel_multiplier=cfg.channel_multiplier,
        blur_kernel=cfg.blur_kernel,
        lr_mlp=cfg.lr_mlp,
        channel_max=cfg.channel_max,
    )
    d_kwargs = dict(
        size=cfg.size,
        channel_multiplier=cfg.channel_multiplier,
        blur_kernel=cfg.blur_kernel,
        channel_max=cfg.channel_max,
    )
    nets: dict[str, nn.Module | None] = {"g_ema": None, "g": None, "d": None}
    for entry in ("g_ema", "g", "d"):
        if entry not in ckpt:
            continue
        net_cls, kwargs = (Discriminator, d_kwargs) if entry == "d" else (Generator, g_kwargs)
        with torch.device("meta"):
            skeleton = net_cls(**kwargs)
        _check_state(ckpt[entry], skeleton, entry, path, cfg, hint)
        nets[entry] = _build(net_cls, kwargs, ckpt[entry], device)

    latent_avg = ckpt.get("latent_avg")
    if latent_avg is not None:
        if not isinstance(latent_avg, Tensor) or latent_avg.numel() != cfg.style_dim:
            shape = tuple(latent_avg.shape) if isinstance(latent_avg, Tensor) else type(latent_avg)
            raise CheckpointError(
                f"checkpoint {path}: 'latent_avg' must hold style_dim={cfg.style_dim} values, "
                f"found {shape}; re-create the file or drop that entry"
            )
        latent_avg = latent_avg.float().reshape(1, cfg.style_dim).to(device)

    extra = ckpt[FORMAT_KEY].get("extra", {}) if not inferred else {}
    return LoadedCheckpoint(
        path=path,
        config=cfg,
        g_ema=nets["g_ema"],  # type: ignore[arg-type]
        d=nets["d"],  # type: ignore[arg-type]
        g=nets["g"],  # type: ignore[arg-type]
        latent_avg=latent_avg,
        g_optim=ckpt.get("g_optim"),
        d_optim=ckpt.get("d_optim"),
        extra=dict(extra),
        inferred=inferred,
    )
