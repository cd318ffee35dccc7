"""Experiment (not a feature): ONNX Runtime static int8 of realesrgan-x4plus, PSNR against fp32.

    PYTHONPATH=. .venv/bin/python benchmarks/upscale_int8_experiment.py a   # a: MinMax, p: percentile, r: reduce_range

Needs `pip install onnxruntime onnx` (not a project dependency: int8 was left out, see
benchmarks/README_upscale.md).  Per-channel QDQ (uint8 activations, int8 weights), calibrated on 12
crops of 6 photographs (astronaut, coffee, chelsea, rocket, color, page), first conv, the two
upsampling convs, the HR conv and the last conv kept in fp32; evaluated on 96² crops of 6 other
photographs.  Measured (variant a, Xeon with AMX, 2 cores): 29.2–35.1 dB against fp32, far from
the 40 dB goal, so the timing part was not reached within the session.
"""
import sys, time, importlib.util, os
from pathlib import Path
import numpy as np, torch
from PIL import Image
from pipeline.engines import upscaler as U
torch.set_num_threads(2)
D = Path(importlib.util.find_spec("skimage").submodule_search_locations[0]) / "data"
CAL = ["astronaut.png","coffee.png","chelsea.png","rocket.jpg","color.png","page.png"]
EVAL = ["motorcycle_left.png","hubble_deep_field.jpg","retina.jpg","ihc.png","camera.png","grass.png"]
def crops(name, size, n):
    im = Image.open(D/name).convert("RGB").reduce(2)
    rng=np.random.default_rng(hash(name)%1000)
    out=[]
    for _ in range(n):
        l=rng.integers(0,im.width-size); t=rng.integers(0,im.height-size)
        out.append(np.asarray(im.crop((l,t,l+size,t+size)),np.float32).transpose(2,0,1)[None]/255)
    return out
def psnr(a,b):
    a=np.rint(np.clip(a,0,1)*255); b=np.rint(np.clip(b,0,1)*255); m=np.mean((a-b)**2); return 99 if m==0 else 10*np.log10(255**2/m)
W=Path("/tmp/up/int8"); fp=W/"x4plus.onnx"
up=U.load_upscaler("realesrgan-x4plus","cpu","fp32")
model=up.descriptor.model.float().eval().to(memory_format=torch.contiguous_format)
if not fp.exists():
    torch.onnx.export(model, torch.rand(1,3,64,64), str(fp), input_names=["x"], output_names=["y"],
        dynamic_axes={"x":{0:"n",2:"h",3:"w"},"y":{0:"n",2:"H",3:"W"}}, opset_version=17, dynamo=False)
print("exported", flush=True)
import onnx, onnxruntime as ort
from onnxruntime.quantization import quantize_static, CalibrationDataReader, QuantFormat, QuantType, CalibrationMethod
g=onnx.load(str(fp)); convs=[n.name for n in g.graph.node if n.op_type=="Conv"]
print(len(convs), convs[:2], convs[-5:], flush=True)
class R(CalibrationDataReader):
    def __init__(s): s.it=iter([c for n in CAL for c in crops(n,64,2)])
    def get_next(s):
        x=next(s.it,None); return None if x is None else {"x":x}
variant=sys.argv[1] if len(sys.argv)>1 else "a"
exclude = convs[:1]+convs[-4:]  # first conv, upsampling convs, HR conv, last conv
qp=W/f"x4plus-int8-{variant}.onnx"
if not qp.exists():
    opts=dict(per_channel=True, quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
              nodes_to_exclude=exclude, calibrate_method={"a":CalibrationMethod.MinMax,"p":CalibrationMethod.Percentile,"r":CalibrationMethod.MinMax}[variant],
              reduce_range=(variant=="r"), extra_options={"CalibPercentile":99.999} if variant=="p" else {})
    t=time.time(); quantize_static(str(fp), str(qp), R(), **opts); print("quantized", time.time()-t, flush=True)
so=ort.SessionOptions(); so.intra_op_num_threads=2; so.inter_op_num_threads=1
sq=ort.InferenceSession(str(qp), so, providers=["CPUExecutionProvider"])
sf=ort.InferenceSession(str(fp), so, providers=["CPUExecutionProvider"])
res=[]
for name in EVAL:
    x=crops(name,96,1)[0]
    with torch.inference_mode(): ref=model(torch.from_numpy(x)).numpy()
    q=sq.run(None,{"x":x})[0]
    res.append(psnr(q,ref)); print(name, f"{res[-1]:.2f}", flush=True)
print("int8 psnr min %.2f median %.2f"%(min(res),np.median(res)))
x=crops(EVAL[0],128,1)[0]; xt=torch.from_numpy(x)
def tq(): sq.run(None,{"x":x})
def tf(): sf.run(None,{"x":x})
def tt():
    with torch.inference_mode(): model(xt.contiguous(memory_format=torch.channels_last))
upb=U.load_upscaler("realesrgan-x4plus","cpu","bf16"); mb=upb.descriptor.model
def tb():
    with torch.inference_mode(): mb(xt.to(torch.bfloat16).contiguous(memory_format=torch.channels_last))
T={k:[] for k in "torch_fp32 ort_fp32 ort_int8 torch_bf16".split()}
fns=dict(torch_fp32=tt,ort_fp32=tf,ort_int8=tq,torch_bf16=tb)
for f in fns.values(): f()
for r in range(3):
    for k,f in fns.items():
        t=time.perf_counter(); f(); T[k].append(time.perf_counter()-t)
for k,v in T.items(): print(k, "median %.2f s"%np.median(v), "x%.2f vs torch fp32"%(np.median(T['torch_fp32'])/np.median(v)))
