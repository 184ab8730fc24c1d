"""The diffusion transformer for text-to-video, one concept per file:

    model.py        the network (patches, 3D RoPE, adaLN-zero blocks, text cross-attention, presets)
    flow.py         rectified flow: timesteps, shift, loss, validation loss
    sample.py       Euler / Heun sampling with classifier-free guidance
    text.py         the frozen text encoder (T5 / UMT5 / CLIP text by id or path)
    codec.py        the latent space: a VAE behind train/vae/interface.py, or pooled pixels
    data.py         latent shards (+ text embeddings) and their resumable reader
    task.py         DiTTask for the shared trainer, DiTTrainConfig, export / load
    generate.py     text → mp4, `reelforge generate`
    attributes.py   attribute clips and the pixel oracle (the quality number)
    demo.py         the text-to-video half of `reelforge demo`
"""
