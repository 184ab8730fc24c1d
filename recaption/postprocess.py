"""Cleaning generated captions, and telling a caption from a failure.

``clean`` removes what every captioning model adds and no training caption should carry: boilerplate
openings ("The video shows …", "In this video, …"), sentences repeated verbatim, markdown and stray
whitespace. ``failure_reason`` says why a cleaned caption is unusable (empty, looping, a refusal) or None;
the caller records such captions as failed and retries once with other settings.
"""
from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

# Openings that describe the medium, not the content. The captured remainder is kept and re-capitalised.
_OPENINGS = re.compile(
    r"^\s*(?:(?:in|throughout) (?:this|the) (?:video|clip|footage|scene|frames?)\s*,?\s*"
    r"|(?:this|the) (?:video|clip|footage|scene|sequence|image|frames?) (?:shows|depicts|features|captures|"
    r"showcases|presents|displays|begins with|opens with)\s*(?:that\s+)?"
    r"|(?:the )?(?:video|clip) (?:is|appears to be) (?:of|about|showing)\s*"
    r"|(?:here is|here's) (?:a|the) (?:detailed |dense )?(?:description|caption)[^:]*:\s*)",
    re.IGNORECASE)
_REFUSALS = re.compile(
    r"\b(?:I(?:'m| am) (?:sorry|unable|not able)|I can(?:not|'t) (?:help|assist|describe|provide|see|view)"
    r"|as an AI\b|unable to (?:view|see|process) (?:the )?(?:video|image))", re.IGNORECASE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def clean(text: str) -> str:
    """The caption without boilerplate opening, markdown, verbatim-repeated sentences or extra spaces."""
    text = re.sub(r"[*_#`]+", "", text or "")
    text = re.sub(r"\s+", " ", text).strip()
    prev = None
    while prev != text:  # "In this video, the clip shows ..." has two openings
        prev = text
        text = _OPENINGS.sub("", text, count=1).lstrip(" ,:;-")
    seen, kept = set(), []
    for sentence in _SENTENCE.split(text):
        norm = re.sub(r"\W+", " ", sentence).strip().lower()
        if norm and norm not in seen:
            seen.add(norm)
            kept.append(sentence.strip())
    text = " ".join(kept)
    return text[:1].upper() + text[1:]


def failure_reason(text: str, min_words: int = 3) -> str | None:
    """Why a cleaned caption is unusable, or None. Looping = the text compresses far better than prose
    (a phrase repeated, which ``clean`` cannot remove when it is not whole sentences)."""
    if not text.strip():
        return "empty output"
    words = text.split()
    if len(words) < min_words:
        return f"too short ({len(words)} words)"
    if _REFUSALS.search(text):
        return "refusal"
    raw = text.encode()
    if len(raw) >= 80 and len(zlib.compress(raw, 9)) / len(raw) < 0.25:
        return "looping output (repeated phrases)"
    if len(words) >= 20 and len(set(words)) / len(words) < 0.2:
        return "looping output (few distinct words)"
    return None


@dataclass
class CaptionResult:
    clip_id: str
    text: str | None        # cleaned caption (None when failed)
    status: str             # ok | failed
    reason: str | None
    attempts: int
    tokens: int             # generated tokens over all attempts
    raw: str = ""           # the last raw output (kept for failed rows' reasons, not stored)


def caption_with_retry(generate, clips: list, first, retry, min_words: int = 3) -> list[CaptionResult]:
    """``generate(clips, settings) -> [Generated]``, cleaned and judged; clips whose caption is unusable
    (or whose request failed) are generated once more with ``retry`` settings, then recorded as failed
    with the reason of both attempts. ``retry=None``: one attempt only."""
    results: dict[str, CaptionResult] = {}
    todo = list(clips)
    for attempt, settings in enumerate((first, retry) if retry is not None else (first,), start=1):
        if not todo:
            break
        again = []
        for clip, gen in zip(todo, generate(todo, settings)):
            prev = results.get(clip.clip_id)
            tokens = gen.tokens + (prev.tokens if prev else 0)
            text = clean(gen.text) if gen.error is None else ""
            why = gen.error or failure_reason(text, min_words)
            if prev is not None and why:
                why = f"{prev.reason}; retry: {why}"
            results[clip.clip_id] = CaptionResult(clip.clip_id, None if why else text, "failed" if why else "ok",
                                                  why, attempt, tokens, gen.text[:200])
            if why:
                again.append(clip)
        todo = again
    return [results[c.clip_id] for c in clips]
