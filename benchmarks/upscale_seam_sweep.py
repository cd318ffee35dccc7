"""Seam sweep: PSNR of tiled against untiled output for several overlaps and blends.

    PYTHONPATH=. .venv/bin/python benchmarks/upscale_seam_sweep.py realesrgan-x4plus 128 32   # model, crop, tile

Each config is (overlap, blend): blend 0 cuts in the middle of the shared band, 0.5 is the
old ramp over its middle half.  Prints per photo "PSNR/time ratio against untiled".
"""
import sys, time, importlib.util
from pathlib import Path
import numpy as np, torch
from PIL import Image
from pipeline.engines import upscaler as U
torch.set_num_threads(2)
D = Path(importlib.util.find_spec("skimage").submodule_search_locations[0]) / "data"
PHOTOS = ["motorcycle_left.png","hubble_deep_field.jpg","retina.jpg","ihc.png","camera.png","grass.png","coins.png","brick.png"]
def crop(name, size):
    im = Image.open(D/name).convert("RGB").reduce(2)
    l,t=(im.width-size)//2,(im.height-size)//2
    return np.asarray(im.crop((l,t,l+size,t+size)),np.float32)/255
def psnr(a,b):
    a=np.rint(a*255); b=np.rint(b*255); m=np.mean((a-b)**2); return 99 if m==0 else 10*np.log10(255**2/m)
def ramp_factory(frac):
    def _ramp(size, scale, left, right):
        p=(np.arange(size*scale,dtype=np.float64)+0.5)/scale
        w=np.ones_like(p)
        for band, d in ((left, p), (right, size-p)):
            if band:
                width=band*frac; lo=(band-width)/2
                w*= np.clip((d-lo)/width,0,1) if width>0 else (d>=band/2)
        return w
    return _ramp
model=sys.argv[1]; size=int(sys.argv[2]); tile=int(sys.argv[3])
up=U.load_upscaler(model,"cpu","fp32")
import pipeline.engines.tiling as T
configs=[(64,0.0),(48,0.0),(32,0.0),(24,0.5)]
res={c:[] for c in configs}
for name in PHOTOS:
    x=crop(name,size)
    t=time.perf_counter(); whole=up.upscale_arrays([x],tile=0)[0]; tw=time.perf_counter()-t
    row=[]
    for ov,f in configs:
        T.BLEND=f; T.band_weights.__defaults__=(f,)
        t=time.perf_counter(); out=up.upscale_arrays([x],tile=tile,overlap=ov)[0]; tt=time.perf_counter()-t
        res[(ov,f)].append(psnr(out,whole)); row.append(f"{res[(ov,f)][-1]:.1f}/{tt/tw:.1f}x"); print(name, ov, f, row[-1], flush=True)
    print(name, " ".join(row), flush=True)
for c in configs: print(c, "min %.1f median %.1f"%(min(res[c]),np.median(res[c])))
