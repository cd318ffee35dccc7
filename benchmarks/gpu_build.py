"""What the GPU benchmarks share: Z-Image-Turbo's full-size configurations, a builder of random-weight
components on a device, and timing helpers. ``gpu_profiles.py`` and ``gpu_cards.py`` both import it (neither
imports the other, but ``gpu_profiles.py --cards`` hands over to ``gpu_cards.main``)."""
from __future__ import annotations

import gc
import statistics
import time

GiB = 1024**3

# Z-Image-Turbo's real configurations.
FULL_TRANSFORMER = dict(all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=3840, n_layers=30,
                        n_refiner_layers=2, n_heads=30, n_kv_heads=30, norm_eps=1e-5, qk_norm=True, cap_feat_dim=2560,
                        rope_theta=256.0, t_scale=1000.0, axes_dims=[32, 48, 48], axes_lens=[1536, 512, 512])
FULL_TEXT_ENCODER = dict(hidden_size=2560, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8,
                         head_dim=128, intermediate_size=9728, vocab_size=151936, max_position_embeddings=40960,
                         rms_norm_eps=1e-6, tie_word_embeddings=True)
FULL_VAE = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
                up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[128, 256, 512, 512], layers_per_block=2,
                act_fn="silu", latent_channels=16, norm_num_groups=32, sample_size=1024, scaling_factor=0.3611,
                shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False)

PROMPT = "a red fox in fresh snow, morning light, detailed fur"


def tiny_configs():
    from pipeline.models import tiny

    text = dict(hidden_size=tiny.TEXT_HIDDEN_SIZE, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                head_dim=16, intermediate_size=2 * tiny.TEXT_HIDDEN_SIZE, vocab_size=tiny.TOKENIZER_VOCAB_SIZE + 16,
                max_position_embeddings=tiny.TOKENIZER_MAX_LENGTH, rms_norm_eps=1e-6, tie_word_embeddings=False)
    vae = dict(tiny.TINY_VAE_CONFIG, scaling_factor=0.3611, shift_factor=0.1159)
    return dict(tiny.TINY_TRANSFORMER_CONFIG), text, vae


class Builder:
    """Random-weight components, initialised on the target device in the target dtype."""

    def __init__(self, device: str, dtype, configs):
        self.device, self.dtype = device, dtype
        self.transformer_config, self.text_config, self.vae_config = configs

    def _on_device(self, make):
        import torch

        previous = torch.get_default_dtype()
        torch.set_default_dtype(self.dtype)
        try:
            with torch.device(self.device), torch.no_grad():
                torch.manual_seed(0)
                return make().eval()
        finally:
            torch.set_default_dtype(previous)

    def transformer(self):
        from diffusers import ZImageTransformer2DModel

        model = self._on_device(lambda: ZImageTransformer2DModel(**self.transformer_config))
        import torch

        with torch.no_grad():  # random final layers output huge velocities; keep them in range
            for layer in model.all_final_layer.values():
                layer.linear.weight.mul_(0.01)
        return model

    def text_encoder(self):
        from transformers import Qwen3Config, Qwen3Model

        config = Qwen3Config(**self.text_config, pad_token_id=0, eos_token_id=2)
        config._attn_implementation = "sdpa"
        return self._on_device(lambda: Qwen3Model(config))

    def vae(self):
        from diffusers import AutoencoderKL

        return self._on_device(lambda: AutoencoderKL(**self.vae_config))

    @staticmethod
    def tokenizer():
        from pipeline.models.tiny import build_tiny_tokenizer

        return build_tiny_tokenizer()

    @staticmethod
    def scheduler():
        from diffusers import FlowMatchEulerDiscreteScheduler

        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=False)


def sync(device):
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def reset_peak(device):
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak(device) -> float | None:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / GiB
    return None


def free_all(device):
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


def jobs_for(size, batch, steps, start_seed=0):
    from pipeline.core.jobs import RenderJob, render_fields

    return [RenderJob(**render_fields(model="bench", prompt=PROMPT, negative="", width=size, height=size, steps=steps,
                                      guidance=0.0, seed=start_seed + i, dtype="bf16")) for i in range(batch)]


WARMUP = True


def timed(device, call, repeats):
    """(median seconds per call, peak GiB over the timed calls); one untimed warm-up call first."""
    if WARMUP:
        call()
        sync(device)
    times = []
    reset_peak(device)
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        sync(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times), peak(device)
