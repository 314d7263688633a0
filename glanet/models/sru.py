"""Simple Recurrent Unit with explicit state (paper eqs. 11-15, and the `sru` 2.6.0 recurrence).

The weights, buffers and state_dict keys are laid out as `sru.SRU`'s, so weights move across
unchanged. Nothing is kept between calls: the cell state goes in and comes out.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

VARIANTS = ("v2", "paper")
# Where training dropout's mask goes in h_t (nowhere at inference):
#   gated: h = x' + (g(c) - x')*mask*r   sru >= 2.3.4 (2.6.0 included): the whole gated term
#   gc:    h = x' + (g(c)*mask - x')*r   sru 2.0.0 to 2.3.2 (the authors' 2.1.x): g(c) only
DROPOUT_SITES = ("gated", "gc")


class SRUCell(nn.Module):
    """One unidirectional SRU layer.

    `weight` is (n_in, n_out * k), columns interleaved per unit: `weight.view(n_in, n_out, k)[..., m]`
    is matrix m (0: candidate, 1: forget gate, 2: reset gate, 3: highway projection when n_in != n_out).
    `weight_c` = [v_f; v_r], `bias` = [b_f; b_r], `scale_x` scales the identity highway (k = 3).
    """

    scale_x: Tensor

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        dropout: float = 0.0,
        rescale: bool = True,
        highway_bias: float = 0.0,
        use_tanh: bool = False,
        variant: str = "v2",
        dropout_on: str = "gated",
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant {variant!r} is not one of {', '.join(VARIANTS)}")
        if dropout_on not in DROPOUT_SITES:
            raise ValueError(f"dropout_on {dropout_on!r} is not one of {', '.join(DROPOUT_SITES)}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout ({dropout}) must be in [0, 1)")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.dropout = float(dropout)
        self.rescale = rescale
        self.highway_bias = highway_bias
        self.use_tanh = use_tanh
        self.variant = variant
        self.dropout_on = dropout_on
        self.num_matrices = 4 if input_size != hidden_size else 3
        self.weight = nn.Parameter(torch.empty(input_size, hidden_size * self.num_matrices))
        self.weight_c = nn.Parameter(torch.empty(2 * hidden_size))
        self.bias = nn.Parameter(torch.empty(2 * hidden_size))
        self.register_buffer("scale_x", torch.ones(1))
        self.reset_parameters()
        if variant == "paper":  # eqs. 12-13 have no c_{t-1} term: weight_c stays in the layout, unused
            self.weight_c.requires_grad_(False)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The `sru` package's initialisation: unit-variance outputs, gates and highway rescaled."""
        h, k = self.hidden_size, self.num_matrices
        self.bias.zero_()
        self.bias[h:] = self.highway_bias
        scale = math.sqrt(1.0 + 2.0 * math.exp(self.highway_bias))
        self.scale_x.fill_(scale if self.rescale else 1.0)
        bound = math.sqrt(3.0 / self.input_size)
        self.weight.uniform_(-bound, bound)
        w = self.weight.view(self.input_size, h, k)
        if self.dropout > 0:
            w[..., 0] *= math.sqrt(1.0 - self.dropout)
        if self.rescale and k == 4:
            w[..., 3] *= scale
        self.weight_c.uniform_(-math.sqrt(3.0), math.sqrt(3.0)).mul_(math.sqrt(0.5))
        w[..., 1] *= math.sqrt(0.5)
        w[..., 2] *= math.sqrt(0.5)

    def dropout_mask(self, batch: int, like: Tensor) -> Tensor | None:
        """Variational mask (B, H) shared over time; None outside training."""
        if not (self.training and self.dropout > 0):
            return None
        keep = 1.0 - self.dropout
        return like.new_empty(batch, self.hidden_size).bernoulli_(keep).div_(keep)

    def _project(self, x: Tensor) -> tuple[Tensor, ...]:
        """x (..., D) -> candidate, forget pre-activation, reset pre-activation, highway; each (..., H)."""
        u = (x.reshape(-1, self.input_size) @ self.weight).view(*x.shape[:-1], self.hidden_size, -1)
        b_f, b_r = self.bias.view(2, self.hidden_size)
        if self.num_matrices == 4:
            highway = u[..., 3]
        else:
            highway = x * self.scale_x if self.rescale else x
        return u[..., 0], u[..., 1] + b_f, u[..., 2] + b_r, highway

    def _recur(
        self, u0: Tensor, u1: Tensor, u2: Tensor, highway: Tensor, c: Tensor, mask: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """One time step of the element-wise recurrence; all (B, H)."""
        if self.variant == "v2":
            v_f, v_r = self.weight_c.view(2, self.hidden_size)
            f = torch.sigmoid(u1 + v_f * c)
            r = torch.sigmoid(u2 + v_r * c)
        else:  # eqs. 12-13: gates from the input only
            f = torch.sigmoid(u1)
            r = torch.sigmoid(u2)
        c = u0 + (c - u0) * f  # eq. 14: f*c + (1-f)*x~
        g = torch.tanh(c) if self.use_tanh else c
        if mask is not None:  # training only; the c carried to the next step is never masked
            if self.dropout_on == "gated":
                r = r * mask  # h = x' + (g - x')*mask*r
            else:
                g = g * mask  # h = x' + (g*mask - x')*r
        h = highway + (g - highway) * r  # eq. 15: r*g(c) + (1-r)*x
        return h, c

    def forward(
        self, x: Tensor, c0: Tensor | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """x (T, B, D), c0 (B, H) or None -> h (T, B, H), c_T (B, H)."""
        steps, batch = x.shape[0], x.shape[1]
        c = x.new_zeros(batch, self.hidden_size) if c0 is None else c0
        if mask is None:
            mask = self.dropout_mask(batch, x)
        u0, u1, u2, highway = self._project(x)  # (T, B, H) each: one matmul for the whole sequence
        hs = []
        for t in range(steps):
            h, c = self._recur(u0[t], u1[t], u2[t], highway[t], c, mask)
            hs.append(h)
        return torch.stack(hs), c

    def step(self, x: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """One step, inference: x (B, D), c (B, H) -> h (B, H), c (B, H)."""
        u0, u1, u2, highway = self._project(x)
        return self._recur(u0, u1, u2, highway, c, None)

    def extra_repr(self) -> str:
        site = f", dropout_on={self.dropout_on!r}" if self.dropout_on != "gated" else ""
        return (
            f"{self.input_size}, {self.hidden_size}, dropout={self.dropout}{site}, rescale={self.rescale}, "
            f"variant={self.variant!r}"
        )


class SRU(nn.Module):
    """Stacked SRU. `forward(x (T,B,D), c0 (L,B,H) | None) -> (h (T,B,H), c (L,B,H))`, like `sru.SRU`.

    Dropout (training only) masks every layer but the last, as the `sru` package does: the gated term
    r*(g(c) - x') with `dropout_on="gated"` (sru 2.6.0), g(c) alone with "gc" (sru 2.1.x).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 3,
        dropout: float = 0.0,
        rescale: bool = True,
        highway_bias: float = 0.0,
        use_tanh: bool = False,
        variant: str = "v2",
        dropout_on: str = "gated",
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.rnn_lst = nn.ModuleList(
            SRUCell(
                input_size if i == 0 else hidden_size,
                hidden_size,
                dropout=dropout if i + 1 < num_layers else 0.0,
                rescale=rescale,
                highway_bias=highway_bias,
                use_tanh=use_tanh,
                variant=variant,
                dropout_on=dropout_on,
            )
            for i in range(num_layers)
        )

    def init_state(
        self, batch: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> Tensor:
        return torch.zeros(self.num_layers, batch, self.hidden_size, device=device, dtype=dtype)

    def _check(self, x: Tensor, c: Tensor | None, time_dim: bool) -> None:
        want = 3 if time_dim else 2
        if x.dim() != want or x.shape[-1] != self.input_size:
            shape = "(T, B, D)" if time_dim else "(B, D)"
            raise ValueError(f"input {tuple(x.shape)} must be {shape} with D = {self.input_size}")
        if c is not None and (
            c.dim() != 3 or c.shape[0] != self.num_layers or c.shape[2] != self.hidden_size
        ):
            raise ValueError(f"state {tuple(c.shape)} must be (L={self.num_layers}, B, H={self.hidden_size})")

    def forward(self, x: Tensor, c0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(x, c0, time_dim=True)
        states = []
        for i, cell in enumerate(self.rnn_lst):
            x, c = cell(x, None if c0 is None else c0[i])
            states.append(c)
        return x, torch.stack(states)

    def step(self, x: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """One time step, no time loop (exports to ONNX): x (B, D), c (L, B, H) -> h (B, H), c (L, B, H)."""
        self._check(x, c, time_dim=False)
        states = []
        for i, cell in enumerate(self.rnn_lst):
            x, c_i = cell.step(x, c[i])
            states.append(c_i)
        return x, torch.stack(states)
