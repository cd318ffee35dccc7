"""Phase separation: prompt embeddings are computed once, stored, and the text encoder freed.

An embedding is keyed by the text encoder's fingerprint (model weights + dtype), the prompt
text and the maximum token length, and stored in the content-addressed store as a
safetensors blob. A later run — another seed, another size, a refine — finds it there and
never loads the text encoder at all.

The encoding itself is diffusers' own ``ZImagePipeline._encode_prompt`` (chat template,
padding to ``max_length``, second-to-last hidden state, padding stripped), called on a small
holder of the tokenizer and text encoder so the embeddings equal what the pipeline would compute.
"""
from __future__ import annotations

import hashlib
import logging
import time
from types import SimpleNamespace
from typing import Callable

from ..core.jobs import canonical_json

log = logging.getLogger("pipeline")

EMBED_VERSION = 1
MAX_SEQUENCE_LENGTH = 512  # ZImagePipeline's default


def embedding_key(text_encoder_id: str, prompt: str, max_length: int = MAX_SEQUENCE_LENGTH) -> str:
    payload = {"kind": "prompt-embedding", "version": EMBED_VERSION, "text_encoder": text_encoder_id,
               "prompt": prompt, "max_length": int(max_length)}
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def to_bytes(tensor) -> bytes:
    from safetensors.torch import save

    return save({"embedding": tensor.detach().to("cpu").contiguous()})


def from_bytes(data: bytes):
    from safetensors.torch import load

    return load(data)["embedding"]


class PromptEmbeddings:
    """Prompt → embedding, from memory, the store, or (on a miss) the text encoder.

    ``load_text_encoder()`` returns ``(tokenizer, text_encoder)`` on the CPU; ``place(encoder)``
    puts the encoder on the device and returns the device to encode on; after encoding the
    encoder is dropped (``on_release`` is called) so its memory is free for the transformer.
    """

    def __init__(self, text_encoder_id: str, store, load_text_encoder: Callable, place: Callable,
                 on_release: Callable | None = None, max_length: int = MAX_SEQUENCE_LENGTH):
        self.text_encoder_id = text_encoder_id
        self.store = store
        self.load_text_encoder = load_text_encoder
        self.place = place
        self.on_release = on_release
        self.max_length = max_length
        self.memory: dict[str, object] = {}
        self.encoder_loads = 0  # how often the text encoder was loaded (tests and logs read it)

    def key(self, prompt: str) -> str:
        return embedding_key(self.text_encoder_id, prompt, self.max_length)

    def get(self, prompts: list[str], device) -> dict[str, object]:
        """Embeddings of ``prompts`` (each a [tokens, hidden] tensor on ``device``)."""
        for prompt in dict.fromkeys(prompts):
            if prompt not in self.memory and self.store is not None:
                artifact = self.store.get(self.key(prompt))
                if artifact is not None:
                    try:
                        self.memory[prompt] = from_bytes(artifact.path.read_bytes())
                    except Exception as err:  # noqa: BLE001 - a damaged blob is recomputed
                        log.warning("stored prompt embedding %s is unreadable (%s); recomputing", artifact.key[:12], err)
                        self.store.discard(artifact.key)
        todo = [p for p in dict.fromkeys(prompts) if p not in self.memory]
        if todo:
            self._encode(todo)
        return {p: self.memory[p].to(device) for p in prompts}

    def _encode(self, prompts: list[str]) -> None:
        import torch
        from diffusers import ZImagePipeline

        started = time.perf_counter()
        logging.getLogger("pipeline.status").info(
            "encoding the prompt%s (loading the text encoder; stored for next time)" % ("s" if len(prompts) > 1 else ""))
        tokenizer, encoder = self.load_text_encoder()
        self.encoder_loads += 1
        try:
            device = self.place(encoder)
            holder = SimpleNamespace(tokenizer=tokenizer, text_encoder=encoder)
            with torch.inference_mode():
                # a copy: _encode_prompt rewrites the caller's list in place
                embeds = ZImagePipeline._encode_prompt(holder, prompt=list(prompts), device=device,
                                                       max_sequence_length=self.max_length)
            for prompt, embed in zip(prompts, embeds):
                embed = embed.to("cpu").clone()
                self.memory[prompt] = embed
                if self.store is not None:
                    self.store.put(self.key(prompt), to_bytes(embed),
                                   {"kind": "prompt-embedding", "text_encoder": self.text_encoder_id,
                                    "prompt": prompt, "max_length": self.max_length,
                                    "shape": list(embed.shape), "dtype": str(embed.dtype).replace("torch.", "")},
                                   suffix=".safetensors")
        finally:
            del encoder, tokenizer
            holder = None
            if self.on_release:
                self.on_release()
        log.info("encoded %d prompt%s in %.1f s; text encoder released", len(prompts), "s" if len(prompts) > 1 else "",
                 time.perf_counter() - started)
