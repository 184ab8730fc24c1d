"""Latent shards: what the DiT trains on. Writing them, adding text embeddings, and a resumable reader.

A latent shard is a WebDataset tar (``shard-NNNNNN.tar``) whose samples hold

    <key>.latent.npy   (C, T, H, W) float16 latents (shards/SPEC.md reserves this member name)
    <key>.json         {"caption", "captions": {version: text}?, "fps", "width", "height", "codec", ...}
    <key>.text.npy     (L, E) float16 frozen text-encoder tokens of the caption, padding dropped (optional;
                       ``text.<version>.npy`` for a caption version)

so the text encoder runs once per dataset, not once per step. ``LatentShardDataset`` serves fixed-shape
batches per latent shape (the bucket), the same number on every rank, and ``state_dict()`` is its exact
position (epoch, batch), as the trainer's checkpoint contract asks. Samples are read by offset
(``tarfile`` headers scanned once), so a rank reads only its own batches.
"""
from __future__ import annotations

import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal

import numpy as np
import torch
from torch import Tensor


@dataclass
class LatentDataConfig:
    source: Literal["latent_shards", "dataset"] = "latent_shards"   # dataset: a `reelforge encode` output
    path: str = ""                      # folder of latent shards, or the encoded dataset
    val_path: str = ""                  # held-out latent shards for the validation loss ("" = none)
    batch_size: int = 8
    caption_version: str = ""           # "" = the "caption" field; else captions[version] and text.<version>.npy
    caption_dropout: float = 0.1        # share of samples trained with the empty caption (for CFG)

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.caption_dropout < 1.0:
            raise ValueError(f"caption_dropout must be in [0, 1), got {self.caption_dropout}")


def text_member(version: str) -> str:
    return f"text.{version}.npy" if version else "text.npy"


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def write_latent_shards(out_dir: str | Path, samples: Iterable[dict], shard_size: int = 256) -> list[Path]:
    """Write samples ``{"key", "latent": (C, T, H, W), "meta": dict, "text": (L, E) | None}`` into tars of
    ``shard_size`` samples. Each tar is written under a temporary name and renamed when complete, so a
    killed run leaves no half shard."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths, tar, n, tmp = [], None, 0, None
    for s in samples:
        if tar is None:
            path = out / f"shard-{len(paths):06d}.tar"
            tmp = path.with_suffix(".tar.partial")
            tar, n = tarfile.open(tmp, "w"), 0
            paths.append(path)
        meta = {**s["meta"], "latent_shape": list(s["latent"].shape)}
        _add(tar, f"{s['key']}.latent.npy", _npy(np.asarray(s["latent"], np.float16)))
        _add(tar, f"{s['key']}.json", json.dumps(meta).encode())
        if s.get("text") is not None:
            _add(tar, f"{s['key']}.{text_member(s.get('text_version', ''))}", _npy(np.asarray(s["text"], np.float16)))
        n += 1
        if n == shard_size:
            tar.close()
            os.replace(tmp, paths[-1])
            tar = None
    if tar is not None:
        tar.close()
        os.replace(tmp, paths[-1])
    return paths


def caption_of(meta: dict, version: str) -> str:
    if version:
        caps = meta.get("captions") or {}
        if version not in caps:
            raise KeyError(f"caption version {version!r} missing (has {sorted(caps)})")
        return caps[version]
    return meta.get("caption", "")


def add_text_embeddings(latent_dir: str | Path, encoder, version: str = "", batch_size: int = 64) -> int:
    """Encode every sample's caption once and add ``<key>.text[.version].npy`` to its shard (each tar
    rewritten to a temporary file and renamed). Returns the number of samples encoded."""
    total = 0
    for path in sorted(Path(latent_dir).glob("shard-*.tar")):
        with tarfile.open(path) as tar:
            members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers() if m.isfile()]
        member = text_member(version)
        members = [(n, d) for n, d in members if not n.endswith("." + member)]
        metas = [(n[: -len(".json")], json.loads(d)) for n, d in members if n.endswith(".json")]
        texts = {}
        for i in range(0, len(metas), batch_size):
            chunk = metas[i:i + batch_size]
            tokens, mask = encoder.encode([caption_of(m, version) for _, m in chunk])
            for (key, _), tok, msk in zip(chunk, tokens, mask):
                texts[key] = tok[msk].numpy()
        tmp = path.with_suffix(".tar.partial")
        with tarfile.open(tmp, "w") as tar:
            for name, data in members:
                _add(tar, name, data)
            for key, emb in texts.items():
                _add(tar, f"{key}.{member}", _npy(emb.astype(np.float16)))
        os.replace(tmp, path)
        total += len(texts)
    return total


class LatentShardDataset:
    """Batches of one latent shape each: ``{"latent" (B, C, T, H, W), "text" (B, L, E) | absent,
    "text_mask" (B, L), "caption" [str], "fps" (B,), "size" (B, 2) pixel (h, w), "key" [str]}``.

    Epoch plan: per shape, a permutation drawn from (seed, epoch), cut into full batches (a short
    remainder is left for the next epoch's draw); batches of all shapes shuffled together; the first
    ``world_size · ⌊n / world_size⌋`` dealt round-robin, so every rank gets the same count."""

    def __init__(self, path: str | Path, batch_size: int, rank: int = 0, world_size: int = 1, seed: int = 0,
                 caption_version: str = ""):
        self.root, self.batch_size = Path(path), batch_size
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.version, self.member = caption_version, text_member(caption_version)
        self.samples: list[dict] = []   # {"key", "shard", "members": {ext: (offset, size)}, "meta"}
        shards = sorted(self.root.glob("shard-*.tar"))
        if not shards:
            raise FileNotFoundError(f"no latent shards (shard-*.tar) in {self.root}")
        for shard in shards:
            by_key: dict[str, dict] = {}
            with tarfile.open(shard) as tar:
                for m in tar.getmembers():
                    key, _, ext = m.name.partition(".")
                    by_key.setdefault(key, {})[ext] = (m.offset_data, m.size)
                for key, members in by_key.items():
                    if "latent.npy" not in members or "json" not in members:
                        continue   # not a latent sample (a stray member): never trained on
                    meta = json.loads(self._read_at(shard, *members["json"]))
                    self.samples.append({"key": key, "shard": shard, "members": members, "meta": meta})
        self.has_text = all(self.member in s["members"] for s in self.samples)
        self.epoch, self.position = 0, 0

    @staticmethod
    def _read_at(path: Path, offset: int, size: int) -> bytes:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(size)

    def plan(self, epoch: int) -> list[list[int]]:
        """This rank's batches (lists of sample indices) for ``epoch``."""
        rng = np.random.default_rng([self.seed, epoch])
        by_shape: dict[tuple, list[int]] = {}
        for i, s in enumerate(self.samples):
            by_shape.setdefault(tuple(s["meta"]["latent_shape"]), []).append(i)
        batches = []
        for shape in sorted(by_shape):
            idx = rng.permutation(by_shape[shape])
            batches += [idx[j:j + self.batch_size].tolist() for j in range(0, len(idx) - self.batch_size + 1, self.batch_size)]
        order = rng.permutation(len(batches))
        usable = len(batches) // self.world_size * self.world_size
        if usable == 0:
            raise ValueError(f"{len(self.samples)} samples give fewer than {self.world_size} batches of "
                             f"{self.batch_size}: lower batch_size")
        return [batches[k] for k in order[:usable][self.rank::self.world_size]]

    def __len__(self) -> int:
        return len(self.plan(self.epoch))

    def __iter__(self):
        plan = self.plan(self.epoch)
        if self.position >= len(plan):
            self.epoch, self.position = self.epoch + 1, 0
            plan = self.plan(self.epoch)
        while self.position < len(plan):
            batch = self.load([self.samples[i] for i in plan[self.position]])
            self.position += 1          # counted when handed out: a checkpoint after it resumes at the next
            yield batch

    def load(self, rows: list[dict]) -> dict:
        lat = [np.load(io.BytesIO(self._read_at(r["shard"], *r["members"]["latent.npy"]))) for r in rows]
        out = {
            "latent": torch.from_numpy(np.stack(lat).astype(np.float32)),                # (B, C, T, H, W)
            "fps": torch.tensor([float(r["meta"].get("fps", 24.0)) for r in rows]),
            "size": torch.tensor([[float(r["meta"].get("height", 0)), float(r["meta"].get("width", 0))] for r in rows]),
            "caption": [caption_of(r["meta"], self.version) for r in rows],
            "key": [r["key"] for r in rows],
        }
        if self.has_text:
            texts = [np.load(io.BytesIO(self._read_at(r["shard"], *r["members"][self.member]))) for r in rows]
            out["text"], out["text_mask"] = pad_tokens([torch.from_numpy(t.astype(np.float32)) for t in texts])
        return out

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


def pad_tokens(seqs: list[Tensor]) -> tuple[Tensor, Tensor]:
    """[(L_i, E)] → (B, L, E) zero-padded and (B, L) bool mask."""
    L = max(1, max(s.shape[0] for s in seqs))
    E = seqs[0].shape[1]
    out = torch.zeros(len(seqs), L, E)
    mask = torch.zeros(len(seqs), L, dtype=torch.bool)
    for i, s in enumerate(seqs):
        out[i, :s.shape[0]], mask[i, :s.shape[0]] = s, True
    return out, mask


class EncodedDatasetLatents:
    """A ``reelforge encode`` dataset (index + shards with ``<key>.latent.npy``, ``latents.json``) read
    through the shared shard reader (``ReaderConfig(latents=True)``: per-epoch posterior draws, equal
    batches per rank, resumable), with latents normalised by the VAE's statistics as the DiT trains on
    them. Captions are encoded by the task's text encoder (these shards carry no text embeddings)."""

    has_text = False

    def __init__(self, path: str | Path, batch_size: int, rank: int = 0, world_size: int = 1, seed: int = 0,
                 caption_version: str = ""):
        from reelforge.shards.reader import ReaderConfig, ShardLoader, VideoShardDataset

        info_path = Path(path) / "latents.json"
        if not info_path.exists():
            raise FileNotFoundError(f"{path} has no latents.json: write it with `reelforge encode`")
        self.info = json.loads(info_path.read_text())
        self.mean = torch.tensor(self.info["latents_mean"], dtype=torch.float32)
        self.scale = torch.tensor(self.info["latents_scale"], dtype=torch.float32)
        self.stride = int(self.info["spatial_compression"])
        ds = VideoShardDataset(path, ReaderConfig(latents=True, caption_version=caption_version or None,
                                                  remainder="drop"), rank, world_size, seed)
        self.loader = ShardLoader(ds, num_workers=0)
        shapes = self.info.get("bucket_latent_shapes") or {}
        if not shapes:
            raise ValueError(f"{info_path} lists no bucket_latent_shapes")
        self.latent_shape = tuple(next(iter(shapes.values())))

    def _norm(self, z: Tensor) -> Tensor:
        view = (1, -1, 1, 1, 1)
        mean = self.mean.view(view) if self.mean.dim() else self.mean
        scale = self.scale.view(view) if self.scale.dim() else self.scale
        return (z - mean) * scale

    def __iter__(self):
        for b in self.loader:
            z = self._norm(b["latent"].float())                                           # (B, Z, T, H, W)
            B, _, _, H, W = z.shape
            yield {"latent": z, "caption": list(b["caption"]), "fps": b["fps"].float(),
                   "size": torch.tensor([[H * self.stride, W * self.stride]], dtype=torch.float32).expand(B, 2),
                   "key": list(b["clip_id"])}

    def state_dict(self) -> dict:
        return self.loader.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.loader.load_state_dict(state)
