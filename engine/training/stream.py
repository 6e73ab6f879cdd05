"""From mapsets to batches: load each song, parse its difficulties, build examples, batch them.

One pass over the sets is an epoch. Training shuffles the sets and augments; evaluation keeps the
order and draws nothing. A set whose song or beatmap cannot be used is skipped and the skip travels
with the next batch (``Batch.skipped``), so the trainer can count and report it even when the data
is prepared in worker processes.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch

from ..errors import MapperatorError
from ..tokenizer import PAD_ID, Tokenizer
from .augment import Augmentations, FixedDraws, RandomDraws
from .dataset import AudioSource, MapSet, read_item_beatmap, star_rating_at
from .examples import IGNORE, Example, ExampleBuilder, MapInput, map_facts

log = logging.getLogger(__name__)

COND_KEYS = ("beatmap_idx", "difficulty", "mapper_idx", "song_position")


@dataclass
class Batch:
    """Tensors of a (micro-)batch, plus the items skipped while it was prepared."""

    frames: torch.Tensor  # float32 [batch, samples]
    decoder_input_ids: torch.Tensor  # int64 [batch, length]
    labels: torch.Tensor  # int64 [batch, length]
    cond: dict[str, torch.Tensor]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (reason, item)
    epoch: int = 0

    def to(self, device) -> "Batch":
        return Batch(self.frames.to(device, non_blocking=True), self.decoder_input_ids.to(device, non_blocking=True),
                     self.labels.to(device, non_blocking=True),
                     {k: v.to(device, non_blocking=True) for k, v in self.cond.items()}, self.skipped, self.epoch)

    @property
    def size(self) -> int:
        return int(self.frames.shape[0])


def collate(examples: Sequence[Example], cond_keys: Sequence[str] = COND_KEYS) -> Batch:
    """Stack examples; decoder sequences are right-padded to the longest (PAD in, IGNORE out).

    Right padding needs no attention mask: the decoder is causal, so padding after a sequence never
    reaches its real positions, and padded positions carry no label.
    """
    length = max(len(e.decoder_input_ids) for e in examples)
    ids = np.full((len(examples), length), PAD_ID, dtype=np.int64)
    labels = np.full((len(examples), length), IGNORE, dtype=np.int64)
    for i, e in enumerate(examples):
        ids[i, : len(e.decoder_input_ids)] = e.decoder_input_ids
        labels[i, : len(e.labels)] = e.labels
    frames = np.stack([e.frames for e in examples])
    cond = {k: torch.from_numpy(np.stack([np.asarray(e.cond[k]) for e in examples])) for k in cond_keys}
    return Batch(torch.from_numpy(frames), torch.from_numpy(ids), torch.from_numpy(labels), cond)


class ExampleSource:
    """Examples of a list of mapsets for one version, vocabulary and augmentation setting."""

    def __init__(self, sets: Sequence[MapSet], builder: ExampleBuilder, augment: Augmentations, *,
                 train: bool, seed: int = 0):
        self.sets = list(sets)
        self.builder = builder
        self.tokenizer: Tokenizer = builder.tok
        self.flags = builder.flags
        self.augment = augment
        self.train = train
        self.seed = seed
        self._stars: dict[tuple[str, float], float | None] = {}
        # Songs at normal speed with their parsed difficulties, for small datasets seen every few steps.
        self._loaded: OrderedDict[tuple, tuple[np.ndarray, list[MapInput]]] = OrderedDict()
        self.cache_sets = 8
        self._unusable: set[tuple] = set()  # sets whose song could not be loaded: not tried again
        self._untokenizable: set[str] = set()  # beatmaps whose examples could not be built: likewise

    def __len__(self) -> int:
        return len(self.sets)

    def examples(self, epoch: int = 0, shard: int = 0, shards: int = 1) -> Iterator[Example | tuple[str, str]]:
        """Examples of one epoch (this shard's sets); a skipped item comes as a (reason, item) pair."""
        rng = np.random.default_rng([self.seed, epoch, shard, shards])
        order = list(self.sets)
        if self.train:
            order = [order[i] for i in np.random.default_rng([self.seed, epoch]).permutation(len(order))]
        if shards == 1:
            mine = order
        elif len(order) >= shards or not self.train:
            mine = order[shard::shards]
        else:  # more training shards than sets: each shard repeats one set, augmented its own way
            mine = [order[shard % len(order)]]
        for s in mine:
            draws = RandomDraws(self.augment, rng) if self.train else FixedDraws()
            yield from self._set_examples(s, draws)

    def _set_examples(self, s: MapSet, draws) -> Iterator[Example | tuple[str, str]]:
        speed = draws.speed()
        flip = draws.flip()
        if s.key in self._unusable:
            return
        cached = self._loaded.get(s.key) if speed == 1.0 else None
        if cached is not None:
            self._loaded.move_to_end(s.key)
            samples, inputs = cached
        else:
            loaded = yield from self._load_set(s, speed)
            if loaded is None:
                self._unusable.add(s.key)
                return
            samples, inputs = loaded
            if speed == 1.0 and self.cache_sets > 0:
                self._loaded[s.key] = loaded
                while len(self._loaded) > self.cache_sets:
                    self._loaded.popitem(last=False)
        yield from self._beatmap_examples(samples, inputs, draws, speed, flip)

    def _load_set(self, s: MapSet, speed: float):
        """The song at ``speed`` and its usable difficulties (skips are yielded); None when the song is unusable."""
        try:
            samples = AudioSource(s).load(self.flags.sample_rate, speed, self.flags.normalize_audio)
        except MapperatorError as e:
            yield f"song cannot be used ({_short(e)})", s.name
            return None
        except Exception as e:  # a decoder bug must not end a long run; the reason is reported
            log.debug("audio of %s failed", s.name, exc_info=True)
            yield f"song cannot be used ({type(e).__name__}: {_short(e)})", s.name
            return None
        song_ms = len(samples) / self.flags.sample_rate * 1000
        inputs: list[MapInput] = []
        for item in s.beatmaps:
            try:
                beatmap = read_item_beatmap(s, item)
                if item.mode is not None and beatmap.mode != item.mode:
                    raise MapperatorError(f"mode {beatmap.mode} differs from the dataset's {item.mode}")
                stars = self._star_rating(s, item, beatmap, speed)
                idx = item.beatmap_idx if item.beatmap_idx is not None else \
                    self.tokenizer.beatmap_idx.get(item.beatmap_id) if item.beatmap_id is not None else None
                facts = map_facts(beatmap, beatmap_id=item.beatmap_id, beatmap_idx=idx, user_id=item.user_id,
                                  difficulty=stars, year=item.year, song_length_ms=song_ms,
                                  mania_bpm_normalized=self.flags.mania_bpm_normalized_scroll_speed)
                inputs.append(MapInput(beatmap, facts, item.name))
            except MapperatorError as e:
                yield f"beatmap cannot be used ({_short(e)})", item.name
            except Exception as e:
                log.debug("beatmap %s failed", item.name, exc_info=True)
                yield f"beatmap cannot be used ({type(e).__name__}: {_short(e)})", item.name
        return samples, inputs

    def _beatmap_examples(self, samples, inputs: list[MapInput], draws, speed: float, flip) -> Iterator:
        for i, target in enumerate(inputs):
            if target.name in self._untokenizable:
                continue
            others = inputs[:i] + inputs[i + 1:]
            try:
                built = list(self.builder.examples(samples, target, others, draws, speed=speed, flip=flip))
            except MapperatorError as e:
                self._untokenizable.add(target.name)
                yield f"beatmap cannot be tokenized ({_short(e)})", target.name
                continue
            except Exception as e:
                log.debug("examples of %s failed", target.name, exc_info=True)
                self._untokenizable.add(target.name)
                yield f"beatmap cannot be tokenized ({type(e).__name__}: {_short(e)})", target.name
                continue
            yield from built

    def _star_rating(self, s: MapSet, item, beatmap, speed: float) -> float | None:
        key = (item.name, speed)
        if key not in self._stars:
            self._stars[key] = star_rating_at(s, item, beatmap, speed)
        return self._stars[key]

    def batches(self, batch_size: int, epoch: int = 0, shard: int = 0, shards: int = 1,
                cond_keys: Sequence[str] = COND_KEYS, drop_last: bool = False) -> Iterator[Batch]:
        """Batches of one epoch; skipped items ride along with the next batch (or an empty final one)."""
        pending: list[Example] = []
        skipped: list[tuple[str, str]] = []
        for x in self.examples(epoch, shard, shards):
            if isinstance(x, tuple):
                skipped.append(x)
                continue
            pending.append(x)
            if len(pending) == batch_size:
                batch = collate(pending, cond_keys)
                batch.skipped, skipped = skipped, []
                pending = []
                yield batch
        if pending and not drop_last:
            batch = collate(pending, cond_keys)
            batch.skipped, skipped = skipped, []
            yield batch
        if skipped:
            yield Batch(torch.zeros(0), torch.zeros(0, 0, dtype=torch.long), torch.zeros(0, 0, dtype=torch.long),
                        {}, skipped)


class BatchStream(torch.utils.data.IterableDataset):
    """An endless (training) or single-pass (evaluation) stream of batches for a DataLoader.

    Sets are sharded over ``shards`` (one per training process) and, inside a process, over the
    DataLoader's workers.
    """

    def __init__(self, source: ExampleSource, batch_size: int, *, repeat: bool, shard: int = 0, shards: int = 1,
                 cond_keys: Sequence[str] = COND_KEYS, start_epoch: int = 0):
        super().__init__()
        self.source, self.batch_size, self.repeat = source, batch_size, repeat
        self.shard, self.shards, self.cond_keys, self.start_epoch = shard, shards, tuple(cond_keys), start_epoch

    def __iter__(self) -> Iterator[Batch]:
        info = torch.utils.data.get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        shards = self.shards * workers
        shard = self.shard * workers + worker
        epoch = self.start_epoch
        while True:
            produced = False
            for batch in self.source.batches(self.batch_size, epoch, shard, shards, self.cond_keys,
                                             drop_last=False):
                produced = produced or batch.size > 0
                batch.epoch = epoch
                yield batch
            if not self.repeat:
                return
            if not produced:
                if shards == 1:
                    yield _NOTHING_LEFT
                    return
                # This shard's sets are all unusable: draw from every set from now on (its own random draws).
                shards = 1
            epoch += 1


# A training stream that produced no example in a whole epoch says so instead of looping forever.
_NOTHING_LEFT = Batch(torch.zeros(0), torch.zeros(0, 0, dtype=torch.long), torch.zeros(0, 0, dtype=torch.long), {},
                      [("no usable example in a whole pass over the data", "")])


def is_exhausted(batch: Batch) -> bool:
    return batch.size == 0 and batch.skipped == _NOTHING_LEFT.skipped


def _short(e: Exception, limit: int = 160) -> str:
    """The reason of an error without the file name (reasons are counted, files listed separately)."""
    text = str(getattr(e, "reason", None) or e).strip()
    text = text.splitlines()[0] if text else type(e).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
