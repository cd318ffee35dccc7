"""Stop inside an upscaler window: the engine reports progress after each block of the model's trunk,
so a caller that raises from ``progress`` (the app's Stop) is honoured between model calls, not after
a whole window (117 s for one 512² window of x4plus on a loaded CPU). Offline, CPU only."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.engines import upscaler as U


class Stop(Exception):
    pass


@pytest.mark.parametrize("name", ["realesr-animevideov3", "realesrgan-x4plus"])
def test_progress_moves_inside_one_window_and_a_stop_there_ends_the_upscale(weights_dir, name):
    up = U.load_upscaler(name, "cpu", "fp32", weights_dir=weights_dir)
    image = np.random.default_rng(1).random((32, 32, 3), dtype=np.float32)
    seen = []
    out = up.upscale_arrays([image], tile=0, progress=lambda done, total: seen.append((done, total)))
    assert out[0].shape == (32 * up.scale, 32 * up.scale, 3)
    inside = [done for done, total in seen if 0 < done < 1]
    assert {total for _, total in seen} == {1} and len(inside) >= 10 and inside == sorted(inside), seen  # one window, many steps
    assert seen[-1] == (1, 1)

    calls = []

    def stop_at_once(done, total):
        calls.append(done)
        raise Stop

    with pytest.raises(Stop):
        up.upscale_arrays([image], tile=0, progress=stop_at_once)
    assert calls == [inside[0]]  # the first block's report, not the end of the window
    # the hooks are gone afterwards: an upscale without progress reports nothing and still works
    assert up.upscale_arrays([image], tile=0)[0].shape == out[0].shape
