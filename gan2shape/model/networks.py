"""The networks of GAN2Shape (docs/METHOD.md section 2), generalised to image sizes 32, 64 and 128.

All networks take an image batch ``(N, 3, S, S)`` float in [-1, 1] with S a power of two in
[32, 128] (any power of two >= 16 builds; 32..128 are the tested sizes).

- ``DepthNet`` / ``AlbedoNet``: the unsup3d encoder-decoder ("EDDeconv"): S/2 -> ... -> 4x4 by
  stride-2 convs, a 4x4 conv to a ``zdim`` bottleneck, transposed convs back up to S/2, a
  nearest x2 upsample and three convs. Depth has no output activation, albedo has tanh.
- ``ViewNet`` (6 outputs) / ``LightNet`` (4 outputs): plain conv encoders ending in tanh.
- ``InversionEncoder``: the reference ``ResEncoder``, image -> (N, out_dim) hidden latent offset.
- ``InstanceEnsemble``: N independent copies of one network run in one vmapped call, for the
  per-instance mode (one set of networks per instance, many instances per shard).

Generalisation over size: the reference is written for 64 and adds "extra" stages for 128. Here a
network for size S has log2(S) - 2 stride-2 stages (S -> 4); stage k has nf * 2^k channels, with
``nf = max(4096 // S, 16)`` (so the deepest stage has 512 channels at every size of 32..128; at
64 and 128 the layer list equals the reference's).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state

__all__ = [
    "default_nf",
    "EncoderDecoder",
    "DepthNet",
    "AlbedoNet",
    "ConvEncoder",
    "ViewNet",
    "LightNet",
    "ResBlockDown",
    "InversionEncoder",
    "InstanceEnsemble",
]

MIN_SIZE = 16


def default_nf(image_size: int) -> int:
    """Base channel count of the reference: max(4096 // image_size, 16)."""
    _check_size(image_size)
    return max(4096 // image_size, 16)


def _check_size(image_size: int) -> int:
    """Validate a network image size and return its number of stride-2 stages, log2(S) - 2."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < MIN_SIZE:
        raise ValueError(f"image_size must be an int power of two >= {MIN_SIZE}, got {image_size!r}")
    if image_size & (image_size - 1):
        raise ValueError(f"image_size must be a power of two (32, 64 or 128), got {image_size}")
    return int(math.log2(image_size)) - 2


def _check_input(net: nn.Module, x: torch.Tensor, cin: int, image_size: int) -> None:
    name = type(net).__name__
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} expects an image batch (N, {cin}, {image_size}, {image_size}), got {got}")
    if x.shape[1] != cin or x.shape[2] != image_size or x.shape[3] != image_size:
        raise ValueError(
            f"{name} was built for (N, {cin}, {image_size}, {image_size}) inputs, got {tuple(x.shape)}; "
            f"resize the images to {image_size}x{image_size} or build the network with image_size={x.shape[-1]}"
        )


class EncoderDecoder(nn.Module):
    """unsup3d's EDDeconv: image (N, cin, S, S) -> map (N, cout, S, S).

    Down path: conv4x4/2 + GroupNorm + LeakyReLU(0.2) stages (the last one without GroupNorm, as in
    the reference) to 4x4, then conv4x4 (valid) to (N, zdim, 1, 1) + ReLU. Up path: transposed
    conv to 4x4, conv3x3, then per stage a transposed conv4x4/2 and a conv3x3 (each GroupNorm +
    ReLU) up to S/2, nearest x2 upsample, conv3x3 and conv5x5 (GroupNorm + ReLU), conv5x5 to cout.
    GroupNorm uses gn_base * 2^k groups at stage k (gn_base = 8 for S >= 128 else 16, the
    reference's choice): 4 channels per group at 64 and 128.
    activation: None (raw output, any real value) or a module class applied last (tanh: [-1, 1]).
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        image_size: int,
        nf: int | None = None,
        zdim: int = 256,
        gn_base: int | None = None,
        activation: type[nn.Module] | None = nn.Tanh,
    ) -> None:
        super().__init__()
        n_stages = _check_size(image_size)
        nf = default_nf(image_size) if nf is None else nf
        gn_base = (8 if image_size >= 128 else 16) if gn_base is None else gn_base
        if nf % gn_base:
            raise ValueError(f"nf={nf} must be a multiple of gn_base={gn_base} for GroupNorm")
        self.cin, self.cout, self.image_size = cin, cout, image_size
        ch = [nf * 2**k for k in range(n_stages)]
        groups = [gn_base * 2**k for k in range(n_stages)]
        layers: list[nn.Module] = []
        prev = cin
        for k in range(n_stages):
            layers.append(nn.Conv2d(prev, ch[k], 4, stride=2, padding=1, bias=False))
            if k < n_stages - 1:
                layers.append(nn.GroupNorm(groups[k], ch[k]))
            layers.append(nn.LeakyReLU(0.2))
            prev = ch[k]
        layers += [nn.Conv2d(prev, zdim, 4, stride=1, padding=0, bias=False), nn.ReLU()]
        # Up path mirrors the down path; resolution 1 -> 4, then 4 -> S/2 in n_stages - 1 steps.
        layers += [
            nn.ConvTranspose2d(zdim, ch[-1], 4, stride=1, padding=0, bias=False),
            nn.ReLU(),
            nn.Conv2d(ch[-1], ch[-1], 3, padding=1, bias=False),
            nn.ReLU(),
        ]
        for k in range(n_stages - 2, -1, -1):
            layers += [
                nn.ConvTranspose2d(ch[k + 1], ch[k], 4, stride=2, padding=1, bias=False),
                nn.GroupNorm(groups[k], ch[k]),
                nn.ReLU(),
                nn.Conv2d(ch[k], ch[k], 3, padding=1, bias=False),
                nn.GroupNorm(groups[k], ch[k]),
                nn.ReLU(),
            ]
        layers += [
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(nf, nf, 3, padding=1, bias=False),
            nn.GroupNorm(gn_base, nf),
            nn.ReLU(),
            nn.Conv2d(nf, nf, 5, padding=2, bias=False),
            nn.GroupNorm(gn_base, nf),
            nn.ReLU(),
            nn.Conv2d(nf, cout, 5, padding=2, bias=False),
        ]
        if activation is not None:
            layers.append(activation())
        self.network = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(self, x, self.cin, self.image_size)
        return self.network(x)


class DepthNet(EncoderDecoder):
    """Image (N, 3, S, S) in [-1, 1] -> raw depth (N, 1, S, S), any real value (no activation).

    Decode with gan2shape.model.decode.decode_depth.
    """

    def __init__(self, image_size: int, nf: int | None = None, zdim: int = 256) -> None:
        super().__init__(3, 1, image_size, nf=nf, zdim=zdim, activation=None)


class AlbedoNet(EncoderDecoder):
    """Image (N, 3, S, S) in [-1, 1] -> albedo (N, 3, S, S) in [-1, 1] (tanh)."""

    def __init__(self, image_size: int, nf: int | None = None, zdim: int = 256) -> None:
        super().__init__(3, 3, image_size, nf=nf, zdim=zdim, activation=nn.Tanh)


class ConvEncoder(nn.Module):
    """unsup3d's Encoder: image (N, cin, S, S) -> (N, cout), tanh output in [-1, 1].

    conv4x4/2 + ReLU stages (nf * 2^k channels) down to 4x4, conv4x4 (valid) + ReLU to 1x1,
    conv1x1 to cout, tanh (or no activation if activation is None).
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        image_size: int,
        nf: int | None = None,
        activation: type[nn.Module] | None = nn.Tanh,
    ) -> None:
        super().__init__()
        n_stages = _check_size(image_size)
        nf = default_nf(image_size) if nf is None else nf
        self.cin, self.cout, self.image_size = cin, cout, image_size
        layers: list[nn.Module] = []
        prev = cin
        for k in range(n_stages):
            layers += [nn.Conv2d(prev, nf * 2**k, 4, stride=2, padding=1, bias=False), nn.ReLU()]
            prev = nf * 2**k
        layers += [
            nn.Conv2d(prev, prev, 4, stride=1, padding=0, bias=False),
            nn.ReLU(),
            nn.Conv2d(prev, cout, 1, bias=False),
        ]
        if activation is not None:
            layers.append(activation())
        self.network = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(self, x, self.cin, self.image_size)
        return self.network(x).reshape(x.shape[0], self.cout)


class ViewNet(ConvEncoder):
    """Image (N, 3, S, S) in [-1, 1] -> raw view (N, 6) in [-1, 1]: 3 rotations, 3 translations.

    Decode with gan2shape.model.decode.decode_view.
    """

    def __init__(self, image_size: int, nf: int | None = None) -> None:
        super().__init__(3, 6, image_size, nf=nf)


class LightNet(ConvEncoder):
    """Image (N, 3, S, S) in [-1, 1] -> raw light (N, 4) in [-1, 1]: ambient, diffuse, dir x, dir y.

    Decode with gan2shape.model.decode.decode_light.
    """

    def __init__(self, image_size: int, nf: int | None = None) -> None:
        super().__init__(3, 4, image_size, nf=nf)


class ResBlockDown(nn.Module):
    """Residual downsampling block: (N, cin, H, W) -> (N, cout, H/2, W/2).

    y = conv3x3(relu(conv3x3/2(a))) + shortcut(avgpool2(a)) with a = relu(x); shortcut is a 1x1
    conv (with bias) when cin != cout. The skip taking relu(x) reproduces what the reference
    computes (its in-place ReLU overwrites x before the skip reads it).
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.shortcut: nn.Module = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(x)
        h = self.conv2(torch.relu(self.conv1(a)))
        return h + self.shortcut(nn.functional.avg_pool2d(a, 2))


class InversionEncoder(nn.Module):
    """The inversion encoder E (reference ResEncoder): image (N, 3, S, S) in [-1, 1] -> (N, out_dim).

    conv4x4/2 to nf channels (S/2), then log2(S) - 3 ResBlockDowns doubling channels to 4x4,
    ReLU, conv4x4 (valid) to twice the channels, ReLU, conv1x1 to out_dim. No output activation:
    the output is an offset in the GAN's mapping hidden space (out_dim = the GAN's style_dim).
    nf: 32 in the reference.
    """

    def __init__(self, image_size: int, out_dim: int = 512, nf: int = 32) -> None:
        super().__init__()
        n_stages = _check_size(image_size)
        self.image_size, self.out_dim = image_size, out_dim
        layers: list[nn.Module] = [nn.Conv2d(3, nf, 4, stride=2, padding=1, bias=False)]
        prev = nf
        for _ in range(n_stages - 1):
            layers.append(ResBlockDown(prev, prev * 2))
            prev *= 2
        layers += [
            nn.ReLU(),
            nn.Conv2d(prev, prev * 2, 4, stride=1, padding=0, bias=False),
            nn.ReLU(),
            nn.Conv2d(prev * 2, out_dim, 1, bias=False),
        ]
        self.network = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(self, x, 3, self.image_size)
        return self.network(x).reshape(x.shape[0], self.out_dim)


class InstanceEnsemble(nn.Module):
    """N independent copies of one network, evaluated together with torch.func.vmap.

    Per-instance mode trains one set of networks per instance; a shard holds many instances.
    The copies' parameters are stacked along a new leading axis (one nn.Parameter per original
    parameter, shape (n, *shape)), so one optimizer over ``ensemble.parameters()`` trains all
    copies. Because Adam (and weight decay) act elementwise, a single Adam over the stacked
    parameters is exactly N independent Adams, one per copy, as long as every copy's loss is
    summed (not averaged across instances, which would scale each copy's gradient by 1/N; Adam
    is invariant to that scale up to eps).

    Joint mode needs none of this: one shared network sees all instances' images.

    module_factory: called n times, each call returning a fresh network (e.g.
        ``lambda: DepthNet(64)``); the copies get independent random initialisations.
    forward(x): x (n*B, ...) grouped by instance (rows i*B .. i*B+B-1 belong to copy i) ->
        output (n*B, ...) of copy i on its rows; equals running each copy on its own rows.
    """

    def __init__(self, module_factory: Callable[[], nn.Module], n: int) -> None:
        super().__init__()
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"InstanceEnsemble needs n >= 1 copies, got {n!r}")
        copies = [module_factory() for _ in range(n)]
        self._init_from(copies)

    @classmethod
    def replicate(cls, module: nn.Module, n: int) -> InstanceEnsemble:
        """n copies all starting from ``module``'s weights (e.g. joint pre-trained weights)."""
        return cls(lambda: copy.deepcopy(module), n)

    def _init_from(self, copies: Sequence[nn.Module]) -> None:
        self.n = len(copies)
        params, buffers = stack_module_state(list(copies))
        # The template holds the architecture only; its own tensors are never used.
        template = copy.deepcopy(copies[0]).to("meta")
        object.__setattr__(self, "_template", template)
        self._names = list(params)
        self._buffer_names = list(buffers)
        self.stacked = nn.ParameterList([nn.Parameter(params[k].detach().clone()) for k in self._names])
        for i, k in enumerate(self._buffer_names):
            self.register_buffer(f"stacked_buffer_{i}", buffers[k].detach().clone())

    def _state(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        params = dict(zip(self._names, self.stacked))
        buffers = {k: getattr(self, f"stacked_buffer_{i}") for i, k in enumerate(self._buffer_names)}
        return params, buffers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[0] % self.n:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"InstanceEnsemble of {self.n} copies expects a batch (n*B, ...) with n={self.n}, got {got}; "
                "group the rows by instance (B rows per instance)"
            )
        b = x.shape[0] // self.n
        grouped = x.reshape(self.n, b, *x.shape[1:])
        params, buffers = self._state()
        template = self._template

        def one(p: dict[str, torch.Tensor], buf: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
            return functional_call(template, (p, buf), (xi,))

        out = torch.func.vmap(one)(params, buffers, grouped)
        return out.reshape(self.n * b, *out.shape[2:])

    def copy_state_dict(self, i: int) -> dict[str, torch.Tensor]:
        """The state dict of copy i (detached clones), loadable into a network from the factory."""
        if not 0 <= i < self.n:
            raise ValueError(f"copy index must be in [0, {self.n - 1}], got {i}")
        params, buffers = self._state()
        return {k: v[i].detach().clone() for k, v in {**params, **buffers}.items()}

    @torch.no_grad()
    def load_copy(self, i: int, state_dict: dict[str, torch.Tensor]) -> None:
        """Overwrite copy i's weights (e.g. reset an instance to the pre-trained weights)."""
        if not 0 <= i < self.n:
            raise ValueError(f"copy index must be in [0, {self.n - 1}], got {i}")
        params, buffers = self._state()
        expected = set(params) | set(buffers)
        if set(state_dict) != expected:
            missing, extra = sorted(expected - set(state_dict)), sorted(set(state_dict) - expected)
            raise ValueError(f"state_dict does not match the ensemble's network: missing {missing}, unexpected {extra}")
        for k, v in {**params, **buffers}.items():
            v[i].copy_(state_dict[k])
