"""Work past one process: the torchrun/Accelerate share (``distributed``). Imported by the stages and the entry
points; imports only ``core``, and torch or accelerate only when several processes were launched."""
