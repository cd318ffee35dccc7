"""Where model files come from, and what they are called: the model a user means and its fingerprint
(``names``), the Hugging Face cache (``hub``), a ComfyUI install (``comfy``), single files (``single_file``),
each component's source (``components``), Real-ESRGAN weights (``upscaler_weights``, ``ncnn``), LoRA files
(``loras``) and the offline tiny-random model (``tiny``). May import ``core``; never engines or stages."""
