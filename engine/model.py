"""The Mapperatorinator network: mel front end, conditioning embedders and a Whisper-style
encoder-decoder.

Three backbones exist among the published checkpoints and differ in how attention weights are stored,
how positions are given and which norm they use:

* ``whisper`` (v29): transformers' own Whisper: separate ``q_proj/k_proj/v_proj/out_proj`` (no bias on k),
  LayerNorms with bias, and learned position tables (``embed_positions``) added to the encoder's frames and
  the decoder's tokens instead of rotary positions; its mel front end is nnAudio's (STFT kernels stored).

* ``ropewhisper`` (v30, v31): separate ``q_proj/k_proj/v_proj/out_proj`` (no bias on k), cross attention
  named ``encoder_attn``; rotary "dynamic" NTK positions in every self-attention.
* ``varwhisper`` (v32, v32-mini): fused ``Wqkv`` (cross attention ``Wq`` + ``Wkv``) and ``Wo``; every
  ``global_attn_every_n_layers``-th layer attends globally, the others within a local window with their
  own rotary base.

Module attribute names mirror the checkpoint keys (``transformer.model.encoder.layers.N.self_attn...``)
so that published weights and LoRA adapters trained upstream load without renaming.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

ROPEWHISPER = "ropewhisper"
VARWHISPER = "varwhisper"
NNAUDIO = "nnAudio"  # SpectrogramConfig.implementation of v29
WHISPER = "whisper"  # plain transformers Whisper (openai/whisper-*): learned positions, LayerNorm
SEPARATE_PROJECTIONS = (ROPEWHISPER, WHISPER)  # q_proj/k_proj/v_proj/out_proj, cross attention "encoder_attn"

# Present in every published checkpoint but never read: decoder_embedder replaces the backbone's own embedding.
UNUSED_CHECKPOINT_KEYS = ("transformer.model.decoder.embed_tokens.weight",)

# The largest value of each size among the published models (v29: whisper-small with 388 nnAudio mels, v30/v31:
# ropewhisper-small, v32: varwhisper-small, v32-mini: varwhisper-base; upstream's configs/model/*.yaml and
# train/*.yaml over the Whisper base configs).
PUBLISHED_MAX = {
    "d_model": 768, "layers": 12, "attention_heads": 12, "ffn_dim": 3072, "n_mels": 388, "cond_dim": 128,
    "cond_size": 384, "max_source_positions": 2048, "max_target_positions": 8192, "n_fft": 1024,
    "hop_length": 128, "sample_rate": 16000, "local_attention": 128,
}
# What a checkpoint's config.json may ask for: 4x the published sizes. Anything larger is a damaged or foreign file,
# refused before it can allocate gigabytes or build layers for minutes.
SIZE_LIMITS = {name: 4 * value for name, value in PUBLISHED_MAX.items()}


@dataclass(frozen=True)
class BackboneConfig:
    flavour: str  # WHISPER, ROPEWHISPER or VARWHISPER
    d_model: int
    encoder_layers: int
    decoder_layers: int
    encoder_heads: int
    decoder_heads: int
    encoder_ffn_dim: int
    decoder_ffn_dim: int
    num_mel_bins: int
    max_source_positions: int
    max_target_positions: int
    vocab_size: int
    activation: str = "gelu"
    # ropewhisper
    rope_type: str = "dynamic"
    rope_encoder_scaling: float = 1.0
    rope_decoder_scaling: float = 1.0
    # varwhisper
    attention_bias: bool = True
    global_attn_every_n_layers: int = 1
    local_attention: int = 128
    global_rope_theta: float = 10000.0
    local_rope_theta: float = 10000.0


@dataclass(frozen=True)
class SpectrogramConfig:
    sample_rate: int = 16000
    n_fft: int = 1024
    n_mels: int = 80
    hop_length: int = 128
    f_min: float = 20
    f_max: float = 8000
    pad_mode: str = "reflect"
    log_scale: bool = True
    implementation: str = "torchaudio"  # or "nnAudio" (v29): STFT by convolution with stored kernels, slaney mels


@dataclass(frozen=True)
class ModelConfig:
    backbone_name: str
    backbone: BackboneConfig
    spectrogram: SpectrogramConfig
    vocab_size_in: int
    vocab_size_out: int
    do_style_embed: bool = False
    do_difficulty_embed: bool = False
    do_mapper_embed: bool = False
    do_song_position_embed: bool = False
    project_encoder_input: bool = False
    num_classes: int = 0
    num_mappers: int = 0
    cond_dim: int = 128
    cond_size: int = 0
    rhythm_weight: float = 1.0
    rhythm_token_start: int = 0
    rhythm_token_end: int = 0
    label_smoothing: float = 0.0
    init_std: float = 0.02
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


def parameter_count(config: ModelConfig) -> int:
    """Values in the model's weights and stored buffers, worked out from the config alone: what loading it costs
    in memory can be checked before anything is allocated."""
    b, s = config.backbone, config.spectrogram
    d, cd = b.d_model, config.cond_dim

    def linear(n_in: int, n_out: int, bias: bool = True) -> int:
        return n_in * n_out + (n_out if bias else 0)

    def ffn(width: int) -> int:
        return linear(d, width) + linear(width, d)

    norm = 2 * d if b.flavour == WHISPER else d  # LayerNorm has a bias, RMSNorm not
    if b.flavour in SEPARATE_PROJECTIONS:
        self_attn = cross_attn = 3 * linear(d, d) + linear(d, d, bias=False)  # k_proj has no bias
    else:
        bias = b.attention_bias
        self_attn = linear(d, 3 * d, bias) + linear(d, d, bias)
        cross_attn = linear(d, d, bias) + linear(d, 2 * d, bias) + linear(d, d, bias)
    encoder = (linear(3 * b.num_mel_bins, d) + linear(3 * d, d) + norm
               + b.encoder_layers * (self_attn + 2 * norm + ffn(b.encoder_ffn_dim)))
    decoder = norm + b.decoder_layers * (self_attn + cross_attn + 3 * norm + ffn(b.decoder_ffn_dim))
    if b.flavour == WHISPER:  # learned position tables
        encoder += b.max_source_positions * d
        decoder += b.max_target_positions * d
    front = (s.n_fft // 2 + 1) * s.n_mels + s.n_fft  # mel filterbank and window
    if s.implementation == NNAUDIO:
        front += 2 * (s.n_fft // 2 + 1) * s.n_fft  # the STFT's sine and cosine kernels
    total = (encoder + decoder + linear(d, b.vocab_size, bias=False) + front
             + config.vocab_size_in * d + config.vocab_size_out)  # decoder_embedder and the loss weights
    if config.do_style_embed:
        total += (config.num_classes + 1) * d
    if config.do_difficulty_embed:
        total += 16 + linear(8, cd) + 2 * cd + linear(cd, cd) + 2 * cd
    if config.do_mapper_embed:
        total += (config.num_mappers + 1) * cd + 2 * cd
    if config.do_song_position_embed:
        total += 20 + linear(20, 2 * cd) + 4 * cd + linear(2 * cd, cd) + 2 * cd
    if config.project_encoder_input:
        total += linear(s.n_mels + config.cond_size, d)
    return total


def on_host(make: Callable[..., Any]) -> Callable[..., Any]:
    """Computes a buffer or initial value from the config on the CPU, whatever device context is active.
    Checkpoints are built on the meta device, where such values are replaced afterwards (by the stored ones, or
    recomputed), and arithmetic on meta tensors goes through torch's Python references, whose first use imports
    torch._dynamo or sympy: ~0.5-1.3 s of a process's first model load, for nothing."""
    @functools.wraps(make)
    def build(*args: Any, **kwargs: Any) -> Any:
        with torch.device("cpu"):
            return make(*args, **kwargs)
    return build


# --- spectrogram ----------------------------------------------------------------------------------


class _Buffers(nn.Module):
    """A module that only holds named buffers (keeps checkpoint key paths like ``mel_scale.fb``)."""

    def __init__(self, **buffers: torch.Tensor):
        super().__init__()
        for name, value in buffers.items():
            self.register_buffer(name, value)


class MelSpectrogram(nn.Module):
    """log(1 + power mel spectrogram) with the filterbank and window stored in the checkpoint.

    Equivalent to upstream's torchaudio MelSpectrogram (center=True, power 2, HTK mel) + log1p, computed with
    torch.stft so torchaudio is not needed at run time. Always runs in fp32.
    """

    def __init__(self, config: SpectrogramConfig):
        super().__init__()
        self.config = config
        n_freqs = config.n_fft // 2 + 1
        self.transform = nn.Module()
        self.transform.mel_scale = _Buffers(fb=mel_filterbank(config, n_freqs))
        self.transform.spectrogram = _Buffers(window=torch.hann_window(config.n_fft))

    def forward(self, samples: torch.Tensor) -> torch.Tensor:
        """(batch, samples) float waveform -> (batch, frames, n_mels) with frames = samples // hop + 1."""
        c = self.config
        window = self.transform.spectrogram.window
        spec = torch.stft(
            samples.float(), c.n_fft, c.hop_length, c.n_fft, window,
            center=True, pad_mode=c.pad_mode, normalized=False, onesided=True, return_complex=True,
        )
        power = spec.abs().pow(2.0)  # (batch, freqs, frames)
        mel = torch.matmul(power.transpose(-1, -2), self.transform.mel_scale.fb)  # (batch, frames, mels)
        return torch.log1p(mel) if c.log_scale else mel


class NnAudioMelSpectrogram(nn.Module):
    """Power mel spectrogram as nnAudio computes it (v29): the STFT as a convolution with stored sine and cosine
    kernels (Hann window folded in), constant or reflect padding of n_fft // 2, magnitude squared, then the stored
    slaney mel basis; no log. Buffers keep nnAudio's checkpoint names (``transform.stft.wsin``, ...)."""

    def __init__(self, config: SpectrogramConfig):
        super().__init__()
        self.config = config
        wsin, wcos, window = fourier_kernels(config.n_fft)
        self.transform = _Buffers(mel_basis=slaney_mel_basis(config, config.n_fft // 2 + 1))
        self.transform.stft = _Buffers(wsin=wsin, wcos=wcos, window_mask=window[None, :, None])

    def forward(self, samples: torch.Tensor) -> torch.Tensor:
        """(batch, samples) float waveform -> (batch, frames, n_mels) with frames = samples // hop + 1."""
        c, stft = self.config, self.transform.stft
        x = samples.float()[:, None, :]
        pad = c.n_fft // 2
        x = F.pad(x, (pad, pad), mode="constant" if c.pad_mode == "constant" else c.pad_mode)
        imag = F.conv1d(x, stft.wsin, stride=c.hop_length)
        real = F.conv1d(x, stft.wcos, stride=c.hop_length)
        power = torch.sqrt(real.pow(2) + imag.pow(2)) ** 2  # nnAudio's magnitude, then its power 2
        mel = torch.matmul(self.transform.mel_basis, power)  # (batch, mels, frames)
        return mel.permute(0, 2, 1)


@on_host
def spectrogram_module(config: SpectrogramConfig) -> nn.Module:
    return NnAudioMelSpectrogram(config) if config.implementation == NNAUDIO else MelSpectrogram(config)


def fourier_kernels(n_fft: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """nnAudio's STFT kernels [n_fft // 2 + 1, 1, n_fft] (sine, cosine, each times the periodic Hann window) and
    the window, for a new model; a checkpoint's stored buffers replace them when it loads."""
    s = torch.arange(n_fft, dtype=torch.float64)
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
    angle = 2 * math.pi * k * s / n_fft
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
    wsin = (torch.sin(angle).float() * window).float()[:, None, :]
    wcos = (torch.cos(angle).float() * window).float()[:, None, :]
    return wsin, wcos, window.float()


def slaney_mel_basis(config: SpectrogramConfig, n_freqs: int) -> torch.Tensor:
    """librosa's (and nnAudio's) slaney mel filterbank [n_mels, n_freqs], area-normalised."""
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp

    def hz_to_mel(f: float) -> float:
        return f / f_sp if f < min_log_hz else min_log_mel + math.log(f / min_log_hz) / logstep

    mels = torch.linspace(hz_to_mel(config.f_min), hz_to_mel(config.f_max), config.n_mels + 2, dtype=torch.float64)
    hz = torch.where(mels >= min_log_mel, min_log_hz * torch.exp(logstep * (mels - min_log_mel)), f_sp * mels)
    fft_freqs = torch.linspace(0, config.sample_rate / 2, n_freqs, dtype=torch.float64)
    ramps = hz[:, None] - fft_freqs[None, :]
    diff = hz[1:] - hz[:-1]
    lower = -ramps[:-2] / diff[:-1, None]
    upper = ramps[2:] / diff[1:, None]
    weights = torch.clamp(torch.minimum(lower, upper), min=0.0)
    return (weights * (2.0 / (hz[2:] - hz[:-2]))[:, None]).float()


def mel_filterbank(config: SpectrogramConfig, n_freqs: int) -> torch.Tensor:
    """HTK triangular mel filterbank [n_freqs, n_mels], for a new model (a checkpoint loads its own)."""
    def hz_to_mel(f):
        return 2595.0 * math.log10(1.0 + f / 700.0)

    all_freqs = torch.linspace(0, config.sample_rate // 2, n_freqs)
    m_pts = torch.linspace(hz_to_mel(config.f_min), hz_to_mel(config.f_max), config.n_mels + 2)
    f_pts = 700.0 * (10 ** (m_pts / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return torch.clamp(torch.min(down, up), min=0.0)


# --- conditioning embedders (v30/v31) ----------------------------------------------------------------


class _RadialBasis(nn.Module):
    """Gaussian bumps with learnable centres and widths over a value in [0, 1]."""

    def __init__(self, num_basis: int):
        super().__init__()
        self.basis_centers = nn.Parameter(on_host(torch.linspace)(0, 1, num_basis))  # on meta: imports sympy
        self.basis_widths = nn.Parameter(torch.full((num_basis,), 0.1))

    def rbf(self, x: torch.Tensor) -> torch.Tensor:
        d = x.unsqueeze(-1) - self.basis_centers.view(1, -1)
        return torch.exp(-d.pow(2) / (2 * self.basis_widths.view(1, -1).pow(2)))


def _projection(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    # Indices 0,1,4,5 carry weights in checkpoints (2 is ReLU, 3 dropout).
    return nn.Sequential(
        nn.Linear(n_in, hidden), nn.LayerNorm(hidden), nn.ReLU(), nn.Dropout(0.1),
        nn.Linear(hidden, n_out), nn.LayerNorm(n_out),
    )


class DifficultyEmbedder(_RadialBasis):
    def __init__(self, hidden_size: int, max_difficulty: float = 10.0, num_basis: int = 8):
        super().__init__(num_basis)
        self.max_difficulty = max_difficulty
        self.difficulty_proj = _projection(num_basis, hidden_size, hidden_size)

    def forward(self, stars: torch.Tensor) -> torch.Tensor:
        return self.difficulty_proj(self.rbf(stars / self.max_difficulty))


class SongPositionEmbedder(_RadialBasis):
    def __init__(self, hidden_size: int, num_basis: int = 10):
        super().__init__(num_basis)
        self.position_proj = _projection(2 * num_basis, 2 * hidden_size, hidden_size)

    def forward(self, span: torch.Tensor) -> torch.Tensor:
        """span: [batch, 2] window start and end as fractions of the song."""
        return self.position_proj(torch.cat([self.rbf(span[:, 0]), self.rbf(span[:, 1])], dim=1))


class MapperEmbedder(nn.Module):
    """One learned row per known mapper plus a last row for "unknown" (index -1)."""

    def __init__(self, num_mappers: int, dim: int):
        super().__init__()
        self.num_mappers = num_mappers
        self.embedding = nn.Embedding(num_mappers + 1, dim)
        self.dropout = nn.Dropout(0.1)
        self.layer_norm = nn.LayerNorm(dim)

    def forward(self, mapper_idx: torch.Tensor) -> torch.Tensor:
        idx = torch.where(mapper_idx < 0, torch.full_like(mapper_idx, self.num_mappers), mapper_idx)
        idx = idx.clamp(0, self.num_mappers)
        return self.layer_norm(self.dropout(self.embedding(idx)))


class StyleEmbedder(nn.Module):
    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + 1, dim)

    def forward(self, beatmap_idx: torch.Tensor) -> torch.Tensor:
        return self.embedding_table(beatmap_idx)


# --- rotary positions ---------------------------------------------------------------------------------


# (cos, signed sin) of rotary positions: [seq, head_dim] each from Rotary.forward, reshaped by LayerPositions.angles
# for VarWhisper's layout; None for learned positions
Angles = tuple[torch.Tensor, torch.Tensor]


class Rotary(nn.Module):
    """Rotary position angles for one head size and base (HF "default"/"dynamic" NTK semantics)."""

    def __init__(self, head_dim: int, base: float, max_positions: int, dynamic: bool = False, factor: float = 1.0):
        super().__init__()
        self.head_dim, self.base, self.max_positions = head_dim, base, max_positions
        self.dynamic, self.factor = dynamic, factor
        self.register_buffer("inv_freq", self._inv_freq(base), persistent=False)

    @on_host
    def _inv_freq(self, base: float) -> torch.Tensor:
        exponents = torch.arange(0, self.head_dim, 2, dtype=torch.int64).to(torch.float) / self.head_dim
        return 1.0 / (base ** exponents)

    def reads_positions(self, below: int | None) -> bool:
        """Whether :meth:`forward` reads the positions on the host (which a CUDA graph's step may not): only the
        dynamic scale (v30/v31) needs them, and only where they may pass max_positions. ``below``: a bound the
        caller knows (every position is less), or None."""
        return self.dynamic and (below is None or below > self.max_positions)

    def forward(self, positions: torch.Tensor, dtype: torch.dtype, below: int | None = None) -> Angles:
        """positions: [seq] int -> (cos, signed sin) of shape [seq, head_dim] (:func:`rotate`); ``below``: see
        :meth:`reads_positions`."""
        inv_freq = self.inv_freq
        if self.reads_positions(below):
            seq_len = int(positions.max()) + 1 if positions.numel() else 0
            if seq_len > self.max_positions:
                scale = (self.factor * seq_len / self.max_positions) - (self.factor - 1)
                inv_freq = self._inv_freq(self.base * scale ** (self.head_dim / (self.head_dim - 2))).to(positions.device)
        freqs = positions.float()[:, None] * inv_freq.float()[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype), _signed_halves(emb.sin().to(dtype))


def _signed_halves(sin: torch.Tensor) -> torch.Tensor:
    """sin with its first half negated: rotating is then x*cos + swap(x)*signed_sin, the same numbers as
    x*cos + cat(-x2, x1)*sin (negation is exact) without a negation per query and key tensor."""
    half = sin.shape[-1] // 2
    return torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)


def rotate(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return x * cos + torch.cat((x[..., half:], x[..., :half]), dim=-1) * signed_sin


# --- attention ------------------------------------------------------------------------------------------


class Attention(nn.Module):
    """Multi-head attention with the checkpoint's projection layout.

    ``flavour`` decides parameter names; the maths is the same: softmax(QK^T/sqrt(d)) V with optional rotary
    positions on Q and K, and an additive float mask.
    """

    def __init__(self, flavour: str, d_model: int, heads: int, cross: bool, bias: bool = True):
        super().__init__()
        self.flavour, self.heads, self.cross = flavour, heads, cross
        self.head_dim = d_model // heads
        if flavour in SEPARATE_PROJECTIONS:
            self.q_proj = nn.Linear(d_model, d_model, bias=True)
            self.k_proj = nn.Linear(d_model, d_model, bias=False)
            self.v_proj = nn.Linear(d_model, d_model, bias=True)
            self.out_proj = nn.Linear(d_model, d_model, bias=True)
        elif cross:
            self.Wq = nn.Linear(d_model, d_model, bias=bias)
            self.Wkv = nn.Linear(d_model, 2 * d_model, bias=bias)
            self.Wo = nn.Linear(d_model, d_model, bias=bias)
        else:
            self.Wqkv = nn.Linear(d_model, 3 * d_model, bias=bias)
            self.Wo = nn.Linear(d_model, d_model, bias=bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.heads, self.head_dim).transpose(1, 2)

    def project_q(self, x: torch.Tensor) -> torch.Tensor:
        if self.flavour in SEPARATE_PROJECTIONS:
            return self._heads(self.q_proj(x))
        if self.cross:
            return self._heads(self.Wq(x))
        return self._heads(self.Wqkv(x)[..., : x.shape[-1]])

    def project_kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = x.shape[-1]
        if self.flavour in SEPARATE_PROJECTIONS:
            return self._heads(self.k_proj(x)), self._heads(self.v_proj(x))
        if self.cross:
            kv = self.Wkv(x)
            return self._heads(kv[..., :d]), self._heads(kv[..., d:])
        qkv = self.Wqkv(x)
        return self._heads(qkv[..., d: 2 * d]), self._heads(qkv[..., 2 * d:])

    def project_qkv(self, x: torch.Tensor, rope: Angles | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values in heads, the rotary ``rope`` (if any) applied to queries and keys. Where
        one projection makes all three (VarWhisper), queries and keys are rotated in one pass: a decoder step
        is hundreds of small kernels, and on a GPU their number is its cost."""
        if self.flavour == VARWHISPER and not self.cross:
            (b, t, d), h = x.shape, self.heads
            qkv = self.Wqkv(x)
            qk = qkv[..., : 2 * d].view(b, t, 2, h, self.head_dim)
            if rope is not None:  # shaped [seq, 1, 1, head_dim] for this layout (LayerPositions.angles)
                qk = rotate(qk, *rope)
            return qk[:, :, 0].transpose(1, 2), qk[:, :, 1].transpose(1, 2), self._heads(qkv[..., 2 * d:])
        q, (k, v) = self.project_q(x), self.project_kv(x)
        if rope is not None:
            q, k = rotate(q, *rope), rotate(k, *rope)
        return q, k, v

    def output(self, attended: torch.Tensor) -> torch.Tensor:
        b, h, t, d = attended.shape
        merged = attended.transpose(1, 2).reshape(b, t, h * d)
        return self.out_proj(merged) if self.flavour in SEPARATE_PROJECTIONS else self.Wo(merged)


# cuDNN's attention builds an execution plan per key length, ~2 ms of CPU time per call while the cache grows by
# a token a step (H100, bf16: 10x slower generation), so the growing cache leaves it out. Keys of one fixed
# length (the static step a CUDA graph replays) build it once, and there it is the fastest kernel: on an H200 in
# bf16 a masked one-query v32 attention took 4.9 us against the memory-efficient kernel's 39 us, v32's graphed
# step 656 -> 1026 steps/s, goldens unchanged (bench/step_profile.py). It takes no fp32: those fall through.
_CUDA_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
_FIXED_LENGTH_BACKENDS = [SDPBackend.CUDNN_ATTENTION, *_CUDA_BACKENDS]


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, causal: bool = False,
           fixed_length: bool = False) -> torch.Tensor:
    """softmax(QK^T/sqrt(d) + mask) V. ``fixed_length``: keys of the same length call after call (see above)."""
    out_dtype = None  # where queries are cast for bf16 keys/values (Mapperatorinator.kv_dtype), cast back after
    if q.dtype == torch.float32 and k.dtype == torch.bfloat16:
        out_dtype, q = q.dtype, q.to(k.dtype)
        mask = None if mask is None else mask.to(k.dtype)
    is_causal = causal and mask is None
    if q.is_cuda:
        backends = _FIXED_LENGTH_BACKENDS if fixed_length else _CUDA_BACKENDS
        with sdpa_kernel(backends, set_priority=fixed_length):
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)
    else:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)
    return out if out_dtype is None else out.to(out_dtype)


class RMSNorm(nn.RMSNorm):
    """RMS norm computed in its weights' precision (under autocast bf16 activations meet fp32 weights,
    which would otherwise leave torch's fused kernel)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == self.weight.dtype:  # the usual case; a decoder step makes 37 of these calls
            return F.rms_norm(x, self.normalized_shape, self.weight, self.eps)
        return F.rms_norm(x.to(self.weight.dtype), self.normalized_shape, self.weight, self.eps).to(x.dtype)


FEW_ROWS = 64  # under this many rows (a decoder step's) a norm's or an activation's call costs more than its sums


class EuclideanRMSNorm(RMSNorm):
    """An RMS norm from the row's Euclidean norm, ``x * (sqrt(d) * weight) / max(|x|, sqrt(d * eps))``, for
    inputs of fewer than :data:`FEW_ROWS` rows: the same values as :class:`RMSNorm` but for roundings (the floor
    gives its limit at zero), in four CPU kernels where torch's CPU ``rms_norm`` runs eleven, which in a
    one-token step's loop cost ~24 µs a call (19 calls a v32-mini step). int8 decoding uses it
    (engine.quantize); the other precisions keep RMSNorm's numbers, and so do wider inputs (a prompt)."""

    def __init__(self, norm: RMSNorm):
        super().__init__(norm.normalized_shape, norm.eps, device=norm.weight.device, dtype=norm.weight.dtype)
        if len(norm.normalized_shape) != 1:
            raise ValueError("EuclideanRMSNorm normalizes over the last dimension only")
        width = norm.normalized_shape[0]
        eps = torch.finfo(norm.weight.dtype).eps if norm.eps is None else norm.eps
        with torch.no_grad():
            self.weight.copy_(norm.weight)
        self.register_buffer("scaled_weight", norm.weight.detach() * math.sqrt(width), persistent=False)
        self.floor = math.sqrt(width * eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != self.weight.dtype or x.numel() >= FEW_ROWS * x.shape[-1]:
            return super().forward(x)
        length = torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min_(self.floor)
        return x / length * self.scaled_weight


class LayerNorm(nn.LayerNorm):
    """Whisper's LayerNorm (weight and bias), computed in its weights' precision like RMSNorm."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.to(self.weight.dtype)).to(x.dtype)


def _norm(cfg: "BackboneConfig", d: int) -> nn.Module:
    return LayerNorm(d) if cfg.flavour == WHISPER else RMSNorm(d)


# --- layers ------------------------------------------------------------------------------------------------


def activation(name: str):
    if name == "gelu":
        return F.gelu
    if name == "relu":
        return F.relu
    raise ValueError(f"unsupported activation {name!r}")


def erf_gelu(x: torch.Tensor) -> torch.Tensor:
    """Exact GELU, for inputs of fewer than :data:`FEW_ROWS` rows ``x / 2 * (1 + erf(x / sqrt(2)))`` from torch's
    elementwise kernels: ``F.gelu`` hands a CPU's fp32 tensors to oneDNN, whose call costs ~35 µs in a one-token
    step's loop against a few µs for each of these; the values differ from oneDNN's by roundings. Wider inputs
    (a prompt) keep ``F.gelu``, one pass instead of five. int8 decoding uses it (engine.quantize)."""
    if x.numel() >= FEW_ROWS * x.shape[-1]:
        return F.gelu(x)
    return x * 0.5 * (torch.erf(x * _SQRT_HALF) + 1)


_SQRT_HALF = math.sqrt(0.5)


class EncoderLayer(nn.Module):
    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        d = cfg.d_model
        self.self_attn = Attention(cfg.flavour, d, cfg.encoder_heads, cross=False, bias=cfg.attention_bias)
        self.self_attn_layer_norm = _norm(cfg, d)
        self.fc1 = nn.Linear(d, cfg.encoder_ffn_dim)
        self.fc2 = nn.Linear(cfg.encoder_ffn_dim, d)
        self.final_layer_norm = _norm(cfg, d)
        self.act = activation(cfg.activation)

    def forward(self, x: torch.Tensor, rope: Angles | None,
                mask: torch.Tensor | None) -> torch.Tensor:
        q, k, v = self.self_attn.project_qkv(self.self_attn_layer_norm(x), rope)
        x = x + self.self_attn.output(attend(q, k, v, mask))
        return x + self.fc2(self.act(self.fc1(self.final_layer_norm(x))))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        d = cfg.d_model
        self.self_attn = Attention(cfg.flavour, d, cfg.decoder_heads, cross=False, bias=cfg.attention_bias)
        self.self_attn_layer_norm = _norm(cfg, d)
        cross = Attention(cfg.flavour, d, cfg.decoder_heads, cross=True, bias=cfg.attention_bias)
        norm = _norm(cfg, d)
        # Same role, checkpoint-specific names.
        if cfg.flavour in SEPARATE_PROJECTIONS:
            self.encoder_attn, self.encoder_attn_layer_norm = cross, norm
        else:
            self.cross_attn, self.cross_attn_layer_norm = cross, norm
        self.fc1 = nn.Linear(d, cfg.decoder_ffn_dim)
        self.fc2 = nn.Linear(cfg.decoder_ffn_dim, d)
        self.final_layer_norm = _norm(cfg, d)
        self.act = activation(cfg.activation)
        self.flavour = cfg.flavour

    @property
    def cross(self) -> Attention:
        return self.encoder_attn if self.flavour in SEPARATE_PROJECTIONS else self.cross_attn

    @property
    def cross_norm(self) -> nn.Module:
        return self.encoder_attn_layer_norm if self.flavour in SEPARATE_PROJECTIONS else self.cross_attn_layer_norm

    def forward(
        self,
        x: torch.Tensor,
        rope: Angles | None,
        self_mask: torch.Tensor | None,
        cross_kv: tuple[torch.Tensor, torch.Tensor],
        cache: "LayerCache | StaticLayerCache | None" = None,
        causal: bool = True,
        last_only: bool = False,
    ) -> torch.Tensor:
        """``last_only``: only the last position's output is wanted (the decoder's last layer under a prompt):
        every position's keys and values still go to ``cache``, the rest of the layer runs for the last one."""
        q, k, v = self.self_attn.project_qkv(self.self_attn_layer_norm(x), rope)
        if cache is not None:
            k, v = cache.append(k, v)
        if last_only and x.shape[1] > 1:  # the last query sees every key: no causal flag, the mask's last row
            q, x = q[:, :, -1:], x[:, -1:]
            self_mask = None if self_mask is None else self_mask[..., -1:, :]
        # Without a mask, a multi-token block starting at position 0 is causal through SDPA's flag.
        fixed = cache is not None and cache.fixed_length
        x = x + self.self_attn.output(attend(q, k, v, self_mask, causal=causal and q.shape[2] > 1, fixed_length=fixed))
        q = self.cross.project_q(self.cross_norm(x))
        x = x + self.cross.output(attend(q, *cross_kv_rows(cross_kv, q.shape[0]), None, fixed_length=fixed))
        return x + self.fc2(self.act(self.fc1(self.final_layer_norm(x))))


def cross_kv_rows(cross_kv: tuple[torch.Tensor, torch.Tensor], rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A layer's cross-attention keys and values for ``rows`` rows: as stored, or, where one window's are kept
    for one row (Mapperatorinator._stored_cross_kv), that row expanded to every row."""
    k, v = cross_kv
    if k.shape[0] == rows:
        return k, v
    return k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)


# --- key/value cache ------------------------------------------------------------------------------------------


class LayerCache:
    """Self-attention keys/values of one decoder layer.

    Room grows by doubling up to ``max_len`` instead of being reserved up front: most windows stop long
    before the model's length limit, and 32 rows reserved at v32's 2,560 positions would take about 6 GB in
    fp32 — real memory on a GPU, and commit charge on Windows.
    """

    fixed_length = False  # attention sees keys up to the current length: one more each step

    def __init__(self, batch: int, heads: int, max_len: int, head_dim: int, device, dtype, reserve: int = 0):
        self.max_len = max_len
        room = min(max_len, max(reserve, 1))
        self.k = torch.empty(batch, heads, room, head_dim, device=device, dtype=dtype)
        self.v = torch.empty_like(self.k)
        self.length = 0

    def _make_room(self, needed: int) -> None:
        room = self.k.shape[2]
        if needed <= room:
            return
        room = max(needed, min(2 * room, self.max_len))
        grown = [t.new_empty(t.shape[0], t.shape[1], room, t.shape[3]) for t in (self.k, self.v)]
        for new, old in zip(grown, (self.k, self.v)):
            new[:, :, : self.length] = old[:, :, : self.length]
        self.k, self.v = grown

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = k.shape[2]
        self._make_room(self.length + n)
        self.k[:, :, self.length: self.length + n] = k
        self.v[:, :, self.length: self.length + n] = v
        self.length += n
        return self.k[:, :, : self.length], self.v[:, :, : self.length]

    def select(self, rows: torch.Tensor) -> None:
        """Keep only some batch rows (finished sequences dropped from a batch)."""
        self.k = self.k[rows]
        self.v = self.v[rows]


@dataclass
class DecoderState:
    """Everything the decoder needs between steps: cross-attention K/V per layer and the self-attention cache."""

    cross_kv: list[tuple[torch.Tensor, torch.Tensor]]
    caches: list[LayerCache]
    key_padding: torch.Tensor  # [batch, max_len] bool, True where a position holds a real token
    # one token a row fed without the modules (engine.lean_step.LeanStep: the same logits), set by the token loop
    lean: Callable[[torch.Tensor, "DecoderState"], torch.Tensor] | None = None

    @property
    def length(self) -> int:
        return self.caches[0].length if self.caches else 0

    def select(self, rows: torch.Tensor) -> None:
        if self.cross_kv and self.cross_kv[0][0].shape[0] > 1:  # one row's keys serve every row: kept
            self.cross_kv = [(k[rows], v[rows]) for k, v in self.cross_kv]
        for c in self.caches:
            c.select(rows)
        self.key_padding = self.key_padding[rows]


class StaticLayerCache:
    """Self-attention keys/values of one decoder layer, reserved for every position; the next token's keys and
    values are written at a position held on the device."""

    fixed_length = True  # attention sees all max_len keys every step, the unwritten ones masked

    def __init__(self, cache: LayerCache, max_len: int, position: torch.Tensor):
        b, h, _, d = cache.k.shape
        # zeros, not empty: masked positions still enter the attention product (0 x NaN would be NaN)
        self.k = cache.k.new_zeros(b, h, max_len, d)
        self.v = cache.v.new_zeros(b, h, max_len, d)
        self.k[:, :, : cache.length] = cache.k[:, :, : cache.length]
        self.v[:, :, : cache.length] = cache.v[:, :, : cache.length]
        self.position = position

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # cast as the growing cache's slice assignment does (keys kept in bf16 under int8: Mapperatorinator.kv_dtype)
        self.k.index_copy_(2, self.position, k.to(self.k.dtype))
        self.v.index_copy_(2, self.position, v.to(self.v.dtype))
        return self.k, self.v


@dataclass
class StaticDecoderState:
    """:class:`DecoderState` with fixed shapes: caches for ``max_len`` positions, the position as a device tensor
    (``length`` is its host-side copy), and self-attention masks computed from it on the device."""

    cross_kv: list[tuple[torch.Tensor, torch.Tensor]]
    caches: list[StaticLayerCache]
    key_padding: torch.Tensor  # [batch, max_len] bool, True where a position holds a real token
    position: torch.Tensor  # [1] long: where the next token goes
    length: int
    windows: list[int | None]  # each layer's local-attention half window (None: global)
    dtype: torch.dtype

    @classmethod
    def after_prompt(cls, state: DecoderState, max_len: int, windows: list[int | None], dtype: torch.dtype):
        position = torch.tensor([state.length], device=state.key_padding.device)
        caches = [StaticLayerCache(c, max_len, position) for c in state.caches]
        key_padding = state.key_padding[:, :max_len].clone()
        return cls(state.cross_kv, caches, key_padding, position, state.length, windows, dtype)

    def fits(self, state: DecoderState) -> bool:
        """Whether :meth:`load` can take ``state``: the same rows, frames, length limit and dtypes."""
        mine, theirs = self.cross_kv[0][0], state.cross_kv[0][0]
        return (mine.shape == theirs.shape and mine.dtype == theirs.dtype and self.key_padding.shape[1]
                <= state.key_padding.shape[1] and self.key_padding.shape[0] == state.key_padding.shape[0]
                and self.caches[0].k.dtype == state.caches[0].k.dtype and state.length < self.key_padding.shape[1])

    def load(self, state: DecoderState) -> None:
        """Take ``state`` (another window's prompt fed, same shapes: :meth:`fits`) into these buffers in place, so
        a CUDA graph captured on them replays for it. Cached positions past the new prompt keep the last window's
        keys and values: finite, and masked until a step overwrites them."""
        for (k, v), (new_k, new_v) in zip(self.cross_kv, state.cross_kv):
            k.copy_(new_k)
            v.copy_(new_v)
        for static, cache in zip(self.caches, state.caches):
            static.k[:, :, : cache.length] = cache.k[:, :, : cache.length]
            static.v[:, :, : cache.length] = cache.v[:, :, : cache.length]
        self.key_padding.copy_(state.key_padding[:, : self.key_padding.shape[1]])
        self.position.fill_(state.length)
        self.length = state.length

    @property
    def max_len(self) -> int:
        return self.key_padding.shape[1]

    def nbytes(self) -> int:
        tensors = [t for kv in self.cross_kv for t in kv] + [t for c in self.caches for t in (c.k, c.v)]
        return sum(t.numel() * t.element_size() for t in tensors) + self.key_padding.numel()

    def masks(self) -> list[torch.Tensor]:
        """One additive mask per layer, [batch, 1, 1, max_len]: real tokens up to the position (within the
        layer's window)."""
        columns = torch.arange(self.key_padding.shape[1], device=self.position.device)
        allowed = self.key_padding & (columns <= self.position)
        masks = {}
        for window in set(self.windows):
            mask = allowed if window is None else allowed & (columns >= self.position - window)
            masks[window] = torch.zeros(mask.shape, dtype=self.dtype, device=mask.device).masked_fill(
                ~mask, torch.finfo(self.dtype).min)[:, None, None, :]
        return [masks[window] for window in self.windows]


# --- the backbone ------------------------------------------------------------------------------------------------


class Encoder(nn.Module):
    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.conv1 = nn.Conv1d(cfg.num_mel_bins, d, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(d, d, kernel_size=3, stride=2, padding=1)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.encoder_layers))
        self.layer_norm = _norm(cfg, d)
        self.positions = LayerPositions(cfg, cfg.encoder_heads, cfg.encoder_layers, cfg.max_source_positions,
                                        cfg.rope_encoder_scaling)
        if cfg.flavour == WHISPER:
            self.embed_positions = nn.Embedding(cfg.max_source_positions, d)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features: (batch, channels, frames) -> (batch, frames // 2, d_model)."""
        x = F.gelu(self.conv1(features))
        # contiguous: a permuted view would make every norm and residual add of the stack stride across memory
        x = F.gelu(self.conv2(x)).permute(0, 2, 1).contiguous()
        if self.cfg.flavour == WHISPER:
            if x.shape[1] != self.cfg.max_source_positions:  # Whisper's encoder takes exactly its window
                raise ValueError(f"the encoder takes {2 * self.cfg.max_source_positions} frames, got {features.shape[-1]}")
            x = x + self.embed_positions.weight.to(x.dtype)
        angles = self.positions.angles(torch.arange(x.shape[1], device=x.device), x.dtype)
        for layer, rope, window in zip(self.layers, angles, self.positions.windows):
            mask = _window_mask(x.shape[1], x.shape[1], window, causal=False, device=x.device, dtype=x.dtype)
            x = layer(x, rope, mask)
        return self.layer_norm(x)


class Decoder(nn.Module):
    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        self.cfg = cfg
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.decoder_layers))
        self.layer_norm = _norm(cfg, cfg.d_model)
        self.positions = LayerPositions(cfg, cfg.decoder_heads, cfg.decoder_layers, cfg.max_target_positions,
                                        cfg.rope_decoder_scaling)
        if cfg.flavour == WHISPER:
            self.embed_positions = nn.Embedding(cfg.max_target_positions, cfg.d_model)


class LayerPositions(nn.Module):
    """Which rotary positions (and local window, if any) each layer of a stack uses; none for Whisper's learned
    positions."""

    def __init__(self, cfg: BackboneConfig, heads: int, n_layers: int, max_positions: int, scaling: float):
        super().__init__()
        head_dim = cfg.d_model // heads
        if cfg.flavour == WHISPER:
            self.rotary = nn.ModuleDict()
            self.plan = [(None, None)] * n_layers
        elif cfg.flavour == ROPEWHISPER:
            self.rotary = nn.ModuleDict({"global": Rotary(head_dim, 10000.0, max_positions,
                                                          dynamic="dynamic" in cfg.rope_type, factor=scaling)})
            self.plan = [("global", None)] * n_layers
        else:
            self.rotary = nn.ModuleDict({
                "global": Rotary(head_dim, cfg.global_rope_theta, max_positions),
                "local": Rotary(head_dim, cfg.local_rope_theta, cfg.local_attention),
            })
            self.plan = [("global", None) if i % cfg.global_attn_every_n_layers == 0
                         else ("local", cfg.local_attention // 2) for i in range(n_layers)]
        # VarWhisper rotates queries and keys together as (batch, seq, 2, heads, head_dim): angles shaped for it once
        self.seq_major = cfg.flavour == VARWHISPER

    @property
    def windows(self) -> list[int | None]:
        return [window for _, window in self.plan]

    def angles(self, positions: torch.Tensor, dtype: torch.dtype,
               below: int | None = None) -> list[Angles | None]:
        """(cos, signed sin) per layer, computed once per distinct rotary (``below``: see :meth:`Rotary.forward`);
        [seq, head_dim], or [seq, 1, 1, head_dim] where ``seq_major``."""
        computed = {name: rotary(positions, dtype, below) for name, rotary in self.rotary.items()
                    if any(n == name for n, _ in self.plan)}
        if self.seq_major:
            computed = {name: (cos[:, None, None, :], sin[:, None, None, :]) for name, (cos, sin) in computed.items()}
        return [computed[name] if name is not None else None for name, _ in self.plan]


def _window_mask(q_len: int, k_len: int, half_window: int | None, causal: bool, device, dtype,
                 q_offset: int = 0) -> torch.Tensor | None:
    """Additive mask for local attention (|i - j| <= half_window) and/or causality; None when unrestricted."""
    if half_window is None and not causal:
        return None
    qi = torch.arange(q_len, device=device)[:, None] + q_offset
    kj = torch.arange(k_len, device=device)[None, :]
    allowed = torch.ones(q_len, k_len, dtype=torch.bool, device=device)
    if causal:
        allowed &= kj <= qi
    if half_window is not None:
        allowed &= (qi - kj).abs() <= half_window
    return torch.zeros(q_len, k_len, device=device, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)


class Backbone(nn.Module):
    """``transformer`` in checkpoints: ``model.encoder``, ``model.decoder`` and the LM head ``proj_out``."""

    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        self.model = nn.Module()
        self.model.encoder = Encoder(cfg)
        self.model.decoder = Decoder(cfg)
        self.proj_out = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)


# --- the whole model -----------------------------------------------------------------------------------------------


class Mapperatorinator(nn.Module):
    """Audio window + decoder tokens -> next-token logits, with a cached incremental decoder for generation."""

    # dtype of the cached decoder keys/values (cross and self attention) when it differs from the weights':
    # int8 CPU inference keeps them in bf16 where oneDNN multiplies bf16, half the bytes each decoder step reads
    # (engine.quantize)
    kv_dtype: torch.dtype | None = None
    # run the encoder under bf16 autocast (its linear weights stored in bf16): int8 inference on a CPU with
    # bf16 matrix units, where that encoder is about twice as fast as the int8 one (engine.quantize)
    encoder_bf16: bool = False

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        b = config.backbone
        self.spectrogram = spectrogram_module(config.spectrogram)
        self.transformer = Backbone(b)
        self.decoder_embedder = nn.Embedding(config.vocab_size_in, b.d_model)
        if config.do_style_embed:
            self.style_embedder = StyleEmbedder(config.num_classes, b.d_model)
        if config.do_difficulty_embed:
            self.difficulty_embedder = DifficultyEmbedder(config.cond_dim, max_difficulty=10)
        if config.do_mapper_embed:
            self.mapper_embedder = MapperEmbedder(config.num_mappers, config.cond_dim)
        if config.do_song_position_embed:
            self.song_pos_embedder = SongPositionEmbedder(config.cond_dim)
        if config.project_encoder_input:
            self.encoder_embedder = nn.Linear(config.spectrogram.n_mels + config.cond_size, b.d_model)
        weights = torch.ones(config.vocab_size_out)
        weights[config.rhythm_token_start: config.rhythm_token_end] = config.rhythm_weight
        self.loss_fn = _Buffers(weight=weights)

    @property
    def device(self) -> torch.device:
        return self.decoder_embedder.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.decoder_embedder.weight.dtype

    # encoder side

    def encoder_features(
        self,
        frames: torch.Tensor,
        difficulty: torch.Tensor | None = None,
        mapper_idx: torch.Tensor | None = None,
        song_position: torch.Tensor | None = None,
        beatmap_idx: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Waveform windows (batch, samples) -> encoder input (batch, channels, frames)."""
        mel = self.spectrogram(frames).to(self.dtype)
        batch, n_frames = mel.shape[0], mel.shape[1]
        conds = []
        if self.config.do_style_embed:
            if beatmap_idx is None:
                beatmap_idx = torch.full((batch,), self.config.num_classes, dtype=torch.long, device=mel.device)
            conds.append(self.style_embedder(beatmap_idx))
        if self.config.do_difficulty_embed:
            conds.append(self.difficulty_embedder(_required(difficulty, "difficulty").to(self.dtype)))
        if self.config.do_mapper_embed:
            conds.append(self.mapper_embedder(_required(mapper_idx, "mapper_idx")))
        if self.config.do_song_position_embed:
            conds.append(self.song_pos_embedder(_required(song_position, "song_position").to(self.dtype)))
        parts = [mel] + [c.to(mel.dtype).unsqueeze(1).expand(-1, n_frames, -1) for c in conds]
        features = torch.cat(parts, dim=-1)
        if self.config.project_encoder_input:
            features = self.encoder_embedder(features)
        return features.transpose(1, 2)

    def encode(self, frames: torch.Tensor, **cond: torch.Tensor | None) -> torch.Tensor:
        features = self.encoder_features(frames, **cond)
        if self.encoder_bf16:
            with torch.autocast(features.device.type, dtype=torch.bfloat16):
                return self.transformer.model.encoder(features).float()
        return self.transformer.model.encoder(features)

    # decoder side

    def _decode_layers(self, ids: torch.Tensor, positions: torch.Tensor, cross_kv, masks, caches, causal: bool,
                       below: int | None = None, last_only: bool = False):
        """The logits of every position fed, or with ``last_only`` of the last one only (the last layer's
        attention, feed-forward and the output head then run for one position a row)."""
        decoder = self.transformer.model.decoder
        x = self.decoder_embedder(ids)
        if decoder.cfg.flavour == WHISPER:
            x = x + decoder.embed_positions(positions).to(x.dtype)
        angles = decoder.positions.angles(positions, x.dtype, below)
        last = len(decoder.layers) - 1
        for i, layer in enumerate(decoder.layers):
            x = layer(x, angles[i], masks[i], cross_kv[i], caches[i] if caches is not None else None, causal=causal,
                      last_only=last_only and i == last)
        return self.transformer.proj_out(decoder.layer_norm(x))

    def cross_kv(self, encoder_out: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [layer.cross.project_kv(encoder_out) for layer in self.transformer.model.decoder.layers]

    def forward(
        self,
        frames: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_out: torch.Tensor | None = None,
        causal: bool = True,
        **cond: torch.Tensor | None,
    ) -> torch.Tensor:
        """Teacher-forced logits (batch, length, vocab_out) for a whole decoder sequence, no cache."""
        if encoder_out is None:
            encoder_out = self.encode(frames, **cond)
        ids = decoder_input_ids
        length = ids.shape[1]
        self.check_length(length)
        masks = self._self_masks(length, length, 0, decoder_attention_mask, causal)
        positions = torch.arange(length, device=ids.device)
        return self._decode_layers(ids, positions, self.cross_kv(encoder_out), masks, None, causal)

    def check_length(self, length: int) -> None:
        decoder = self.transformer.model.decoder
        if decoder.cfg.flavour == WHISPER and length > decoder.cfg.max_target_positions:
            raise ValueError(f"the decoder holds {decoder.cfg.max_target_positions} positions")

    def _self_masks(self, q_len: int, k_len: int, q_offset: int, key_padding: torch.Tensor | None, causal: bool):
        """One additive self-attention mask per decoder layer.

        None means no explicit mask is needed: either nothing is restricted, or the block starts at position 0
        and SDPA's own causal path applies (see ``DecoderLayer.forward``).
        """
        decoder = self.transformer.model.decoder
        dtype, device = self.dtype, self.device
        padded = key_padding is not None and not bool(key_padding[:, :k_len].all())
        offset_causal = causal and q_len > 1 and q_offset > 0
        masks = []
        for window in decoder.positions.windows:
            if window is None and not padded and not offset_causal:
                masks.append(None)
                continue
            mask = _window_mask(q_len, k_len, window, causal, device, dtype, q_offset)
            if mask is None:
                mask = torch.zeros(q_len, k_len, device=device, dtype=dtype)
            mask = mask[None, None]
            if padded:
                mask = mask.masked_fill(~key_padding[:, None, None, :k_len], torch.finfo(dtype).min)
            masks.append(mask)
        return masks

    # incremental decoding

    def start_decoding(self, encoder_out: torch.Tensor, prompt_padding: torch.Tensor, max_len: int) -> DecoderState:
        """Prepare a cache for ``max_len`` decoder positions; ``prompt_padding`` [batch, prompt_len] bool (True = token)."""
        b = self.config.backbone
        batch = encoder_out.shape[0]
        head_dim = b.d_model // b.decoder_heads
        reserve = prompt_padding.shape[1] + 256
        caches = [LayerCache(batch, b.decoder_heads, max_len, head_dim, encoder_out.device,
                             self.kv_dtype or self.dtype, reserve) for _ in range(b.decoder_layers)]
        key_padding = torch.ones(batch, max_len, dtype=torch.bool, device=encoder_out.device)
        key_padding[:, : prompt_padding.shape[1]] = prompt_padding
        return DecoderState(self._stored_cross_kv(encoder_out), caches, key_padding)

    def _stored_cross_kv(self, encoder_out: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Cross-attention keys and values as decoding keeps them: in ``kv_dtype`` and contiguous, since every step
        reads all of them, and as head views of one projection each key row lies between the other heads' (on a
        CPU one-query attention over v32's 12 layers was ~13 % slower that way). Layer by layer, so that only one
        layer's projection is held twice.

        On a CPU, where every row is one window (:func:`one_window`: guidance's pair, a mapset's difficulties
        at the same window), they are projected and kept once, for one row, and each layer's attention reads
        them for every row: a CPU step is bound by reading memory, and per row they are a quarter of what a
        v32 step reads. On a GPU they stay one copy a row: the captured step's fused attention kernels are
        chosen for rows laid out apart, and a zero batch stride is untested there."""
        def stored(t: torch.Tensor) -> torch.Tensor:
            # .to returns a tensor of the same dtype as it is, whatever memory_format says: hence .contiguous()
            return t.to(self.kv_dtype or t.dtype, memory_format=torch.contiguous_format).contiguous()

        if encoder_out.device.type == "cpu" and one_window(encoder_out):
            encoder_out = encoder_out[:1]
        return [tuple(stored(t) for t in layer.cross.project_kv(encoder_out))
                for layer in self.transformer.model.decoder.layers]

    def decode_step(self, ids: torch.Tensor, state: DecoderState) -> torch.Tensor:
        """Feed ``ids`` (batch, n) after what ``state`` holds; returns the logits of the last position (batch, vocab).
        One token a row goes through ``state.lean`` where the token loop set one (engine.lean_step: same logits)."""
        if state.lean is not None and ids.shape[1] == 1:
            return state.lean(ids, state)
        positions, masks = self.step_inputs(ids.shape[1], state)
        logits = self._decode_layers(ids, positions, state.cross_kv, masks, state.caches, causal=True, last_only=True)
        return logits[:, -1]

    def step_inputs(self, n: int, state: DecoderState) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """The positions of ``n`` tokens fed after what ``state`` holds, and each decoder layer's self-attention
        mask for them (None where SDPA needs none)."""
        start = state.length
        self.check_length(start + n)
        positions = torch.arange(start, start + n, device=state.key_padding.device)
        return positions, self._self_masks(n, start + n, start, state.key_padding, causal=True)


    # one token a step with shapes that never change (a CUDA graph replays it: engine.cuda_graph)

    def static_decoding(self, state: DecoderState, max_len: int) -> "StaticDecoderState":
        """``state`` (a prompt already fed) as a :class:`StaticDecoderState` holding ``max_len`` positions."""
        return StaticDecoderState.after_prompt(state, max_len, self.transformer.model.decoder.positions.windows,
                                               self.dtype)

    def decode_step_static(self, ids: torch.Tensor, state: "StaticDecoderState",
                           on_device: Callable[[torch.Tensor, "StaticDecoderState"], torch.Tensor] | None = None,
                           ) -> torch.Tensor:
        """:meth:`decode_step` for one token per row (``ids`` [batch, 1]) without reading anything on the host:
        the position lives on the device and keys are attended over all ``max_len`` cached positions, masked.
        ``on_device``: :meth:`static_step_on_device` or a compiled copy of it (engine.cuda_graph)."""
        self.check_length(state.length + 1)
        logits = (on_device or self.static_step_on_device)(ids, state)
        state.length += 1
        return logits

    def static_step_on_device(self, ids: torch.Tensor, state: "StaticDecoderState") -> torch.Tensor:
        """The device's part of :meth:`decode_step_static` (everything but the host's count of positions):
        what torch.compile may take whole."""
        logits = self._decode_layers(ids, state.position, state.cross_kv, state.masks(), state.caches, causal=True,
                                     below=state.max_len)
        state.position.add_(1)
        return logits[:, -1]

    def static_step_reads_host(self, max_len: int) -> bool:
        """Whether :meth:`decode_step_static` must read the position on the host for a state of ``max_len``
        positions (so cannot be captured in a CUDA graph): v30/v31's dynamic rotary past its trained length."""
        return any(r.reads_positions(max_len) for r in self.transformer.model.decoder.positions.rotary.values())


def one_window(encoder_out: torch.Tensor) -> bool:
    """Whether every row of ``encoder_out`` is the same window's output: one row, or one row expanded to the
    batch (a zero batch stride, as engine.passes.EncoderCache hands out rows of one window)."""
    return encoder_out.shape[0] == 1 or encoder_out.stride(0) == 0


def _required(value, name: str):
    if value is None:
        raise ValueError(f"this checkpoint conditions its encoder on {name}, which was not given")
    return value
