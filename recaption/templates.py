"""Versioned prompt templates: ``configs/caption/templates/<id>.yaml`` with ``id``, ``system``, ``prompt``.

A template's hash covers the text the model sees (system + prompt), so a caption records exactly which
wording produced it; editing a template without renaming it still yields a new caption version.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import yaml

from reelforge.configs import CONFIG_DIR

TEMPLATE_DIR = CONFIG_DIR / "caption" / "templates"  # package data: in a wheel too


@dataclass(frozen=True)
class PromptTemplate:
    id: str
    system: str
    prompt: str

    @property
    def hash(self) -> str:
        return hashlib.sha256(f"{self.system}\x00{self.prompt}".encode()).hexdigest()[:16]

    def messages(self, media: list[dict], **fields) -> list[dict]:
        """Chat messages in the transformers/OpenAI content format: the system text, then one user turn
        with the media entries (``{"type": "video"}`` …) before the prompt text."""
        out = [{"role": "system", "content": [{"type": "text", "text": self.system}]}] if self.system else []
        text = self.prompt.format(**fields) if fields else self.prompt
        return out + [{"role": "user", "content": [*media, {"type": "text", "text": text}]}]


def load_template(name: str | Path, template_dir: str | Path | None = None) -> PromptTemplate:
    """A template by id (``dense-v1`` -> ``<template_dir>/dense-v1.yaml``) or by path to a YAML file."""
    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        path = Path(template_dir or TEMPLATE_DIR) / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in Path(template_dir or TEMPLATE_DIR).glob("*.yaml"))
        raise FileNotFoundError(f"no prompt template {name!r} (known: {known})")
    data = yaml.safe_load(path.read_text()) or {}
    unknown = set(data) - {"id", "system", "prompt"}
    if unknown or not isinstance(data.get("prompt"), str) or not data["prompt"].strip():
        raise ValueError(f"{path}: a template needs a non-empty 'prompt' (and optional 'id', 'system'); "
                         f"unknown keys {sorted(unknown)}")
    return PromptTemplate(id=str(data.get("id") or path.stem), system=(data.get("system") or "").strip(),
                          prompt=data["prompt"].strip())
