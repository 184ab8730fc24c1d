"""Random-weight vision-language and text models of real architectures, with an offline tokenizer.

No weights can be downloaded here, yet the captioner must be exercised on the real architecture through
the real loading path. ``build_vlm(preset, out_dir)`` writes a Qwen2.5-VL checkpoint (config, random
weights, a byte-level BPE tokenizer trained in milliseconds on a few sentences, the Qwen2-VL image and
video processors with their default arguments and a chat template in Qwen's format) that
``AutoProcessor`` / ``AutoModelForImageTextToText.from_pretrained`` load like a hub model. ``build_llm``
does the same for a Qwen2 text model (prompt upsampling).

Presets: ``tiny`` (tests, CPU bench: builds in about a second) and ``7b`` (the Qwen2.5-VL-7B-Instruct
shapes: random weights give real GPU throughput for the bench; only built on a GPU, in memory).
Captions from random weights are noise: what these models test is plumbing, batching and speed.
"""
from __future__ import annotations

from pathlib import Path

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>"]

# Qwen's chat format (the hub processors carry a longer template with the same output for these inputs).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}"
    "{% if c['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

_CORPUS = [
    "A red car drives along a coastal road at sunset while the camera pans slowly to the left.",
    "Two people walk through a crowded market; warm light, handheld camera, shallow depth of field.",
    "A close-up of a cat sleeping on a wooden table, soft daylight from a window, static shot.",
    "Aerial view of a snowy mountain range with clouds moving fast, cinematic wide angle.",
    "A dancer in a white dress spins on a dark stage under a single spotlight, slow motion.",
    "The scene shows a city street at night with neon signs, rain, and reflections on the asphalt.",
]

# (text: hidden, layers, heads, kv heads, intermediate, vocab; vision: depth, hidden, heads, intermediate)
VLM_PRESETS = {
    "tiny": dict(text=(64, 2, 4, 2, 128, 512), vision=(2, 32, 2, 64), video_pixels=(56 * 56, 112 * 112)),
    # Qwen2.5-VL-7B-Instruct; video pixels: Qwen's recommended 360x420 per frame
    "7b": dict(text=(3584, 28, 28, 4, 18944, 152064), vision=(32, 1280, 16, 3420),
               video_pixels=(128 * 28 * 28, 360 * 420)),
}
LLM_PRESETS = {"tiny": (64, 2, 4, 2, 128, 512)}


def build_tokenizer(vocab_size: int = 400):
    """A byte-level BPE (Qwen's tokenizer family) trained on a few sentences, with Qwen's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_CORPUS * 4, trainer)
    out = Qwen2Tokenizer(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                         unk_token=None, additional_special_tokens=SPECIAL_TOKENS[1:])
    out.chat_template = CHAT_TEMPLATE
    return out


def _vlm_config(preset: str, tokenizer):
    from transformers import Qwen2_5_VLConfig
    p = VLM_PRESETS[preset]
    hidden, layers, heads, kv, inter, vocab = p["text"]
    depth, v_hidden, v_heads, v_inter = p["vision"]
    head_dim = hidden // heads
    # M-RoPE splits the rotary half-dimension into (time, height, width) sections: 16/24/24 of 64 in 7B
    half = head_dim // 2
    mrope = [half // 4, (half - half // 4) // 2, half - half // 4 - (half - half // 4) // 2]
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    full_att = [i for i in range(depth) if (i + 1) % 8 == 0] or [depth - 1]
    return Qwen2_5_VLConfig(
        text_config=dict(vocab_size=max(vocab, len(tokenizer)), hidden_size=hidden, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=kv, intermediate_size=inter,
                         max_position_embeddings=32768,
                         rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": mrope},
                         bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                         pad_token_id=ids["<|endoftext|>"]),
        vision_config=dict(depth=depth, hidden_size=v_hidden, num_heads=v_heads, intermediate_size=v_inter,
                           out_hidden_size=hidden, fullatt_block_indexes=full_att),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])


def build_vlm_processor(preset: str = "tiny"):
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor
    lo, hi = VLM_PRESETS[preset]["video_pixels"]
    return Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(min_pixels=lo, max_pixels=hi),
                               tokenizer=build_tokenizer(),
                               video_processor=Qwen2VLVideoProcessor(min_pixels=lo, max_pixels=hi),
                               chat_template=CHAT_TEMPLATE)


def build_vlm(preset: str = "tiny", out_dir: str | Path | None = None, dtype=None, device=None, seed: int = 0):
    """(model, processor) of a random Qwen2.5-VL; saved to ``out_dir`` (loadable by hub-id code) when given.

    ``device``/``dtype`` build the weights in place (a 7B model initialised on the GPU takes seconds,
    on the CPU minutes)."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration
    processor = build_vlm_processor(preset)
    config = _vlm_config(preset, processor.tokenizer)
    torch.manual_seed(seed)
    with torch.device(device or "cpu"):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype or torch.float32)
    # the ids live on the top-level config in newer transformers, on text_config only in some 5.x (5.17)
    ids = [getattr(config, k, None) or getattr(config.text_config, k) for k in ("pad_token_id", "eos_token_id")]
    model.generation_config.pad_token_id, model.generation_config.eos_token_id = ids
    if out_dir is not None:
        model.save_pretrained(out_dir)
        processor.save_pretrained(out_dir)
    return model, processor


def build_llm(preset: str = "tiny", out_dir: str | Path | None = None, seed: int = 0):
    """(model, tokenizer) of a random Qwen2 causal LM; saved to ``out_dir`` when given."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM
    tok = build_tokenizer()
    hidden, layers, heads, kv, inter, vocab = LLM_PRESETS[preset]
    eos, pad = tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen2Config(vocab_size=max(vocab, len(tok)), hidden_size=hidden, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=kv, intermediate_size=inter,
                         bos_token_id=pad, eos_token_id=eos, pad_token_id=pad)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.pad_token_id, model.generation_config.eos_token_id = pad, eos
    if out_dir is not None:
        model.save_pretrained(out_dir)
        tok.save_pretrained(out_dir)
    return model, tok
